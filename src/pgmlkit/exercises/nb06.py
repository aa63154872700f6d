"""Checks for notebook 06 (triggers)."""
from . import exercise
from ._sql import rows

FAILED_CUSTOMERS = """
SELECT DISTINCT ON (c.id) c.id, e.error
  FROM customer_data c
  JOIN ml_prediction_errors e ON e.table_name = 'customer_data' AND e.row_id = c.id
 WHERE c.predicted_purchase IS NULL
 ORDER BY c.id, e.error_id DESC
"""


def _one(query: str, params=None):
    import pgmlkit

    with pgmlkit.connect() as conn:
        return conn.execute(query, params).fetchone()


@exercise("06.1")
def failed_predictions(answer):
    expected = sorted(rows(FAILED_CUSTOMERS))
    if not expected:
        return False, "no customer has a failed prediction yet: run section 3 of the notebook first."
    got = rows(answer)
    if got and len(got[0]) < 2:
        return False, "return two columns: the customer's id and the logged error."
    got = sorted((r[0], r[1]) for r in got)
    if got == expected:
        return True, (f"{len(expected)} customers are stored without a prediction because it failed; "
                      "this is the query to watch (or to alert on) in failure-safe mode.")
    ids = [r[0] for r in got]
    if len(ids) != len(set(ids)):
        return False, "some customers appear more than once: one row per customer (DISTINCT ON (id), or the latest error_id)."
    if len(got) > len(expected):
        return False, (f"your query returns {len(got):,} rows, but only {len(expected)} customers have a logged failure: "
                       "most customers without a prediction were simply loaded before the trigger existed. "
                       "Join ml_prediction_errors on row_id = id and table_name = 'customer_data'.")
    missing = sorted(set(expected) - set(got))
    return False, (f"your query returns {len(got)} rows; {len(missing)} failed customers are missing or have another "
                   f"error text, e.g. {missing[0]!r}. Keep only rows whose predicted_purchase IS NULL.")


@exercise("06.2")
def strict_fraud_scoring(answer):
    policy = _one("SELECT on_failure FROM ml_prediction_settings WHERE table_name = 'transactions'")
    if policy is None:
        return False, "ml_prediction_settings has no row for transactions: re-run the reset cell."
    if policy[0] != "reject":
        return False, ("transactions still keeps unscored rows: set on_failure = 'reject' for it in "
                       "ml_prediction_settings (an UPDATE), then try the INSERT.")
    if not isinstance(answer, str):
        return False, f"the answer should be the SQLSTATE as a string (error.sqlstate), got {answer!r}."
    if answer == "22023":
        return True, ("22023 (invalid_parameter_value) blames the row: an unknown merchant category. A 55000 would "
                      "have blamed the model or its deployment — the application can retry those, not this one.")
    if answer in ("XX000", "38000"):
        return False, f"{answer} is PostgreSQL's generic error code; read error.sqlstate from the exception you caught."
    return False, (f"{answer!r} is not the SQLSTATE the rejected INSERT raises. Catch psycopg.Error around the "
                   "INSERT and use error.sqlstate.")
