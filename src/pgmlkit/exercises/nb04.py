"""Checks for notebook 04 (training in the database)."""
from numbers import Integral

from . import exercise
from ._sql import single_value

MODEL = "purchase_predictor"


def _one(query: str, params=None):
    import pgmlkit

    with pgmlkit.connect() as conn:
        return conn.execute(query, params).fetchone()


@exercise("04.1")
def candidate_not_deployed(answer):
    if isinstance(answer, bool) or not isinstance(answer, Integral):
        return False, f"the answer should be the version number train_purchase_model() returned, got {answer!r}."
    row = _one("SELECT algorithm, source, metrics FROM ml_model_versions WHERE model_name = %s AND version = %s",
               [MODEL, answer])
    if row is None:
        return False, f"{MODEL} has no version {answer}. Use the number the function returned."
    algorithm, source, metrics = row
    if algorithm != "HistGradientBoostingRegressor" or source != "train_purchase_model":
        return False, f"version {answer} is a {algorithm or 'direct write'}, not a gradient-boosting model from train_purchase_model()."
    in_use = _one("SELECT version FROM ml_models WHERE model_name = %s", [MODEL])
    if in_use and in_use[0] == answer:
        return False, f"version {answer} is deployed; a candidate should wait: pass promote => false."
    return True, (f"version {answer} is registered (holdout R² {metrics['r2']:.4f}, MAE {metrics['mae']:.2f}) "
                  f"while version {in_use[0] if in_use else None} keeps serving.")


@exercise("04.2")
def lowest_mae(answer):
    value = single_value(answer)
    expected = _one("SELECT version, (metrics->>'mae')::float8 FROM ml_model_versions"
                    " WHERE model_name = %s AND metrics ? 'mae' ORDER BY (metrics->>'mae')::float8, version LIMIT 1",
                    [MODEL])
    if expected is None:
        return False, f"no version of {MODEL} has metrics yet: train one with SELECT train_purchase_model();"
    if value == expected[0]:
        return True, f"version {expected[0]} has the lowest holdout MAE ({expected[1]:.2f})."
    return False, (f"your query returned {value!r}. Order {MODEL}'s versions by (metrics->>'mae')::float8 — "
                   "->> gives text, so cast it, or '100' sorts before '63' — and skip rows without metrics.")


@exercise("04.3")
def predict_from_coefficients(answer):
    value = single_value(answer)
    row = _one("SELECT v.version, v.parameters FROM ml_models m JOIN ml_model_versions v USING (model_name, version)"
               " WHERE m.model_name = %s", [MODEL])
    if row is None or not row[1] or "coefficients" not in row[1]:
        return False, f"the deployed {MODEL} has no coefficients; deploy a linear version first (SELECT train_purchase_model();)."
    version, p = row
    c = p["coefficients"]
    expected = p["intercept"] + c["age"] * 40 + c["income"] * 70000 + c["credit_score"] * 720
    if value is not None and abs(float(value) - expected) < 0.01:
        return True, (f"version {version} predicts {expected:.2f} for (40, 70000, 720); the generator's formula "
                      "says 1770 — the model learned it.")
    return False, (f"your query returned {value!r}, expected {expected:.2f}: intercept + Σ coefficient·feature from "
                   "the deployed version's parameters (->'coefficients'->>'age' and so on, cast to float8).")
