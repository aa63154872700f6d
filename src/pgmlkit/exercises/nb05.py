"""Checks for notebook 05 (prediction functions)."""
from __future__ import annotations

import math
from numbers import Integral

from . import exercise
from ._sql import rows, single_value


def _connect():
    import pgmlkit

    return pgmlkit.connect()


@exercise("05.1")
def batch_joined_back(answer):
    if not isinstance(answer, str) or "predict_purchase_batch" not in answer.lower():
        return False, "score the rows with one call of predict_purchase_batch(...) in your query."
    result = rows(answer)
    if not result or len(result[0]) != 2:
        return False, "the query should return two columns: id and predicted_purchase."
    with _connect() as conn:
        expected = conn.execute("SELECT id, predict_purchase_cached(age, income, credit_score) FROM customer_data"
                                " WHERE id BETWEEN 1 AND 10 ORDER BY id").fetchall()
    ids = [r[0] for r in result]
    if ids != [e[0] for e in expected]:
        return False, (f"expected the ids 1 to 10 in order, got {ids}. Aggregate the ids with the same ORDER BY as "
                       "the features, and ORDER BY id at the end.")
    for (row_id, got), (_, want) in zip(result, expected):
        if got is None or not math.isclose(float(got), want, rel_tol=1e-9):
            return False, (f"customer {row_id}: your query says {got}, predict_purchase_cached() says {want:.2f}. "
                           "Is each prediction next to its own id (same ORDER BY in every array_agg)?")
    return True, (f"10 customers scored in one call; customer 1 → {expected[0][1]:.2f}. The same pattern scores "
                  "a whole table: aggregate, predict once, unnest.")


@exercise("05.2")
def spent_more_than_predicted(answer):
    value = single_value(answer)
    with _connect() as conn:
        (expected,) = conn.execute(
            "SELECT count(*) FROM customer_data"
            " WHERE purchase_amount - predict_purchase_cached(age, income, credit_score) > 250").fetchone()
    if isinstance(value, bool) or not isinstance(value, Integral):
        return False, f"the query should return a count (an integer), got {value!r}."
    if value == expected:
        return True, (f"{expected:,} customers spent more than 250 above their prediction — with noise of "
                      "standard deviation 80, that is the far tail (about 0.1 %).")
    return False, (f"your query counted {value:,}. Compare purchase_amount with "
                   "predict_purchase_cached(age, income, credit_score) + 250 for every customer.")


@exercise("05.3")
def tree_path(answer):
    if not isinstance(answer, str):
        return False, f"the answer should be the path text from ml_predict_cache(), got {answer!r}."
    with _connect() as conn:
        deployed = conn.execute("SELECT v.algorithm FROM ml_models m JOIN ml_model_versions v USING (model_name, version)"
                                " WHERE m.model_name = 'purchase_tree'").fetchone()
        if deployed is None:
            return False, "no model named purchase_tree is deployed: SELECT train_purchase_model('purchase_tree', 'decision_tree');"
        if deployed[0] != "DecisionTreeRegressor":
            return False, f"purchase_tree is a {deployed[0]}; train it with the algorithm 'decision_tree'."
        conn.execute("SELECT ml_predict('purchase_tree', ARRAY[30, 60000, 720])")
        (expected,) = conn.execute("SELECT path FROM ml_predict_cache() WHERE model_name = 'purchase_tree'").fetchone()
    if answer.strip() == expected:
        return True, (f"'{expected}': one tree, compiled into nested comparisons — a prediction walks one "
                      "path from the root to a leaf.")
    return False, f"ml_predict_cache() reports {expected!r} for purchase_tree, your answer is {answer!r}."
