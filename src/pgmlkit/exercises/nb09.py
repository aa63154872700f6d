"""Checks for notebook 09 (production checklist)."""
from . import exercise
from ._sql import rows


@exercise("09.1")
def unpredicted_rows_with_reason(answer):
    import pgmlkit

    got = rows(answer)
    if got and len(got[0]) != 1:
        return False, f"return one column (id), got {len(got[0])}."
    with pgmlkit.connect() as conn:
        expected = {r[0] for r in conn.execute(
            "SELECT c.id FROM customer_data c WHERE c.predicted_purchase IS NULL AND EXISTS ("
            " SELECT FROM ml_prediction_errors e WHERE e.table_name = 'customer_data' AND e.row_id = c.id)").fetchall()}
    if not expected:
        return False, "no row has a logged failure yet: run section 4 of the lesson first."
    ids = {r[0] for r in got}
    if ids == expected and len(got) == len(ids):
        return True, f"{len(ids)} rows were kept without a prediction, each with its reason in ml_prediction_errors."
    if len(got) != len(ids):
        return False, "some ids appear twice: a row can have several log entries — use EXISTS or DISTINCT."
    return False, (f"your query returned {len(ids)} ids, {len(ids & expected)} of the {len(expected)} expected. Join on "
                   "ml_prediction_errors.row_id (and table_name = 'customer_data'), keeping rows whose predicted_purchase IS NULL.")


@exercise("09.2")
def out_of_range_features(answer):
    import pgmlkit

    got = rows(answer)
    if got and len(got[0]) != 1:
        return False, f"return one column (the feature names), got {len(got[0])}."
    with pgmlkit.connect() as conn:
        expected = {r[0] for r in conn.execute(
            "SELECT feature FROM ml_input_warnings('purchase_predictor', ARRAY[15, 200000, 700]::float8[])").fetchall()}
    names = {r[0] for r in got}
    if names == expected:
        return True, (f"{', '.join(sorted(names))}: outside what the model saw in training. It would still answer — "
                      "a linear model extrapolates silently — which is why the application should check.")
    return False, (f"your query returned {sorted(names)}, expected {sorted(expected)}. Try "
                   "ml.input_warnings('purchase_predictor', ARRAY[...]) with the three values in the model's order.")
