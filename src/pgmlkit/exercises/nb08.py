"""Checks for notebook 08 (trade-offs, measured)."""
from __future__ import annotations

import math
import re

from . import exercise
from ._sql import rows, single_value

MODEL = "purchase_predictor"


def _connect():
    import pgmlkit

    return pgmlkit.connect()


@exercise("08.1")
def largest_contribution(answer):
    if not isinstance(answer, str) or "explain_purchase_prediction" not in answer.lower():
        return False, "answer with a SQL query (a Python string) that uses explain_purchase_prediction(62, 30000, 810)."
    value = single_value(answer)
    with _connect() as conn:
        terms = conn.execute("SELECT feature, contribution FROM explain_purchase_prediction(62, 30000, 810)"
                             " WHERE feature <> '(intercept)'").fetchall()
    feature, contribution = max(terms, key=lambda term: abs(term[1]))
    if value == feature:
        others = ", ".join(f"{f} {c:+,.0f}" for f, c in terms if f != feature)
        return True, f"{feature} contributes {contribution:+,.0f} to this prediction (the others: {others})."
    if value == "(intercept)":
        return False, "that is the intercept, which is not a feature: leave it out (WHERE feature <> '(intercept)')."
    if value in {f for f, _ in terms}:
        return False, (f"your query returned {value!r}, not the largest contribution in absolute value: "
                       "order by abs(contribution) DESC.")
    return False, f"your query returned {value!r}; it should return one of {[f for f, _ in terms]}."


@exercise("08.2")
def audit_answer(answer):
    result = rows(answer)
    if len(result) > 1:
        return False, (f"your query returned {len(result)} rows, one per version: keep only the version in use "
                       "(filter on in_use).")
    if len(result) != 1 or len(result[0]) != 4:
        shape = f"{len(result)} row(s)" + (f" of {len(result[0])} column(s)" if result else "")
        return False, f"expected exactly one row of four columns (the version in use), got {shape}."
    with _connect() as conn:
        truth = conn.execute(
            "SELECT trained_by, training_rows, library_versions->>'scikit-learn', (metrics->>'r2')::float8"
            " FROM ml_model_versions v JOIN ml_models m USING (model_name, version) WHERE m.model_name = %s",
            [MODEL]).fetchone()
    if truth is None:
        return False, "no purchase_predictor is deployed: run the notebook's reset cell first."
    trained_by, training_rows, sklearn, r2 = result[0]
    problems = []
    if str(trained_by) != truth[0]:
        problems.append(f"trained_by is {truth[0]!r}, you returned {trained_by!r}")
    if training_rows != truth[1]:
        problems.append(f"training_rows is {truth[1]}, you returned {training_rows!r} "
                        "(is it the version in use? filter on in_use)")
    if str(sklearn).strip('"') != truth[2]:
        problems.append(f"the scikit-learn version is {truth[2]!r}, you returned {sklearn!r} (->> gives text)")
    try:
        r2_ok = math.isclose(float(r2), truth[3], rel_tol=1e-9)
    except (TypeError, ValueError):
        r2_ok = False
    if not r2_ok:
        problems.append(f"the holdout R² is {truth[3]:.6f}, you returned {r2!r} (metrics->>'r2')")
    if problems:
        return False, "; ".join(problems) + "."
    return True, (f"trained by {truth[0]} on {truth[1]:,} rows with scikit-learn {truth[2]}, holdout R² {truth[3]:.3f} "
                  "— four answers an auditor gets from one registry row.")


@exercise("08.3")
def prediction_in_plain_sql(answer):
    if not isinstance(answer, str):
        return False, f"the answer should be a SQL query as a Python string, got {type(answer).__name__}."
    called = re.findall(r"\b(predict\w*|ml_\w*predict\w*|explain_\w+|plpython\w*)\s*\(", answer, re.IGNORECASE)
    if called:
        return False, f"no PL/Python function this time: your query calls {called[0]}(). Use the coefficients in parameters."
    value = single_value(answer)
    with _connect() as conn:
        expected = conn.execute("SELECT predict_purchase_cached(35, 50000, 700)").fetchone()[0]
    try:
        ok = math.isclose(float(value), expected, rel_tol=1e-9)
    except (TypeError, ValueError):
        ok = False
    if ok:
        return True, (f"{float(value):,.4f}, the same as predict_purchase_cached — computed by PostgreSQL alone, "
                      "from the registry's numbers.")
    return False, (f"your query returned {value!r}, but the model predicts {expected:,.4f}. Intercept plus each "
                   "coefficient times its feature, from the version in use (join ml_models to ml_model_versions).")
