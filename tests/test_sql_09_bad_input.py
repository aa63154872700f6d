"""sql/09 with sql/06's failure-safe trigger: the bad-input matrix of issue 5.

Every bad input is inserted as the application role would (ml_app_demo) with the trigger on and
on_failure = 'log'. Each either stores the row with a NULL prediction and a logged reason, or is
refused by PostgreSQL's own type checks with a clear message before any row exists; an
implausible but finite input is predicted and flagged by ml_input_warnings. Rows are counted
before and after: none is lost, and the backend survives every case.
"""
from __future__ import annotations

import pickle

import numpy as np
import psycopg
import pytest
from sklearn.linear_model import LinearRegression

import pgmlkit

FILES = ("02_sample_data.sql", "04_training.sql", "05_prediction.sql", "06_triggers.sql",
         "07_retraining.sql", "09_hardening.sql")


def role_url(user: str) -> str:
    """DATABASE_URL as a demo login role (its password is its name)."""
    return pgmlkit.database_url(user=user, password=user)


@pytest.fixture(scope="module")
def db():
    with pgmlkit.connect() as conn:
        for name in FILES:
            pgmlkit.run_sql_file(name, conn)
        # Known data and a fresh model, whatever other test modules left: the ranges below depend on it.
        conn.execute("SELECT use_prediction_trigger('none')")
        conn.execute("SELECT load_sample_customers(5000, 42)")
        conn.execute("SELECT train_purchase_model()")
        if conn.execute("SELECT count(*) FROM transactions").fetchone()[0] < 1000:
            conn.execute("SELECT load_sample_transactions(20000, 42)")
        if conn.execute("SELECT count(*) FROM ml_models WHERE model_name = 'fraud_detector'").fetchone()[0] == 0:
            conn.execute("SELECT train_fraud_model()")
        conn.execute("SELECT use_prediction_trigger('row')")
        conn.execute("UPDATE ml_prediction_settings SET on_failure = 'log'")
        yield conn


@pytest.fixture()
def app(db):
    with psycopg.connect(role_url("ml_app_demo"), autocommit=True) as conn:
        yield conn


def counts(db):
    return db.execute("SELECT (SELECT count(*) FROM customer_data), (SELECT count(*) FROM ml_prediction_errors)").fetchone()


# (age, income, credit_score) as SQL literals, and the words the logged reason must contain
LOGGED = {
    "NULL age": ("NULL", "60000", "700", "feature age is NULL"),
    "NULL income": ("40", "NULL", "700", "feature income is NULL"),
    "NULL credit_score": ("40", "60000", "NULL", "feature credit_score is NULL"),
    "NaN income": ("40", "'NaN'", "700", "feature income is NaN"),
    "+Infinity income": ("40", "'Infinity'", "700", "feature income is Infinity"),
    "-Infinity income": ("40", "'-Infinity'", "700", "feature income is -Infinity"),
    "absurd income": ("40", "1e30", "700", "not a plausible amount"),
}


@pytest.mark.parametrize("case", sorted(LOGGED))
def test_bad_feature_values_keep_the_row_and_log_why(db, app, case):
    age, income, credit_score, reason = LOGGED[case]
    rows, errors = counts(db)
    row_id, predicted, version = app.execute(
        f"INSERT INTO customer_data (age, income, credit_score) VALUES ({age}, {income}, {credit_score})"
        " RETURNING id, predicted_purchase, model_version").fetchone()
    assert predicted is None and version is None
    logged = db.execute("SELECT error, hint, model_name FROM ml_prediction_errors WHERE row_id = %s"
                        " ORDER BY error_id DESC LIMIT 1", [row_id]).fetchone()
    assert reason in logged[0] and logged[1] and logged[2] == "purchase_predictor"
    assert counts(db) == (rows + 1, errors + 1)
    assert app.execute("SELECT 1").fetchone() == (1,)          # the backend survived


@pytest.mark.parametrize("age, income, credit_score, warned", [
    (-5, 60000, 700, {"age": "below the training range"}),
    (40, 5_000_000, 700, {"income": "above the training range"}),
    (200, -1000, 2000, {"age": "above the training range", "income": "below the training range",
                        "credit_score": "above the training range"}),
])
def test_implausible_finite_values_are_predicted_and_flagged(db, app, age, income, credit_score, warned):
    rows, errors = counts(db)
    row_id, predicted = app.execute(
        "INSERT INTO customer_data (age, income, credit_score) VALUES (%s, %s, %s) RETURNING id, predicted_purchase",
        [age, income, credit_score]).fetchone()
    assert predicted is not None                    # a linear model extrapolates silently ...
    found = dict(app.execute("SELECT feature, warning FROM ml.input_warnings('purchase_predictor', ARRAY[%s, %s, %s]::float8[])",
                             [age, income, credit_score]).fetchall())
    assert found == warned                          # ... which is why the range is checked
    assert app.execute("SELECT count(*) FROM ml.input_warnings('purchase_predictor', ARRAY[40, 60000, 700])").fetchone()[0] == 0
    assert counts(db) == (rows + 1, errors)


@pytest.mark.parametrize("values, sqlstate", [
    ("('forty', 60000, 700)", "22P02"),             # invalid_text_representation
    ("(40, 'lots', 700)", "22P02"),
    ("(40, 60000, 7e12)", "22003"),                 # numeric_value_out_of_range for an integer column
])
def test_a_string_or_overflow_where_a_number_belongs_is_refused_before_any_row_exists(db, app, values, sqlstate):
    rows, errors = counts(db)
    with pytest.raises(psycopg.errors.DataError) as raised:
        app.execute(f"INSERT INTO customer_data (age, income, credit_score) VALUES {values}")
    assert raised.value.sqlstate == sqlstate
    assert counts(db) == (rows, errors)             # nothing half-stored
    with pytest.raises(psycopg.errors.DataError):
        app.execute("SELECT ml.predict('purchase_predictor', '{forty, 60000, 700}')")
    assert app.execute("SELECT 1").fetchone() == (1,)


def test_an_unknown_category_keeps_the_transaction_unscored(db, app):
    before = db.execute("SELECT count(*) FROM transactions").fetchone()[0]
    row_id, probability, flagged = app.execute(
        "INSERT INTO transactions (amount, merchant_category, hour_of_day, distance_from_home_km)"
        " VALUES (250, 'crypto_atm', 3, 12) RETURNING id, fraud_probability, is_flagged").fetchone()
    assert probability is None and flagged is None          # NULL: route it to manual review
    error, hint = db.execute("SELECT error, hint FROM ml_prediction_errors WHERE table_name = 'transactions'"
                             " AND row_id = %s ORDER BY error_id DESC LIMIT 1", [row_id]).fetchone()
    assert "'crypto_atm' was not seen in training" in error and "grocery" in hint
    assert db.execute("SELECT count(*) FROM transactions").fetchone()[0] == before + 1


def test_a_missing_model_keeps_the_row(db, app):
    rows, errors = counts(db)
    with db.transaction():
        db.execute("UPDATE ml_prediction_settings SET model_name = 'test09_no_such_model' WHERE table_name = 'customer_data'")
    try:
        row_id, predicted = app.execute("INSERT INTO customer_data (age, income, credit_score) VALUES (40, 60000, 700)"
                                        " RETURNING id, predicted_purchase").fetchone()
        assert predicted is None
        error = db.execute("SELECT error FROM ml_prediction_errors WHERE table_name = 'customer_data' AND row_id = %s"
                           " ORDER BY error_id DESC LIMIT 1", [row_id]).fetchone()[0]
        assert error == "no model named 'test09_no_such_model' is deployed"
        with pytest.raises(psycopg.Error, match="test09_no_such_model"):
            app.execute("SELECT ml.predict('test09_no_such_model', ARRAY[40, 60000, 700])")
    finally:
        db.execute("UPDATE ml_prediction_settings SET model_name = 'purchase_predictor' WHERE table_name = 'customer_data'")
    assert counts(db) == (rows + 1, errors + 1)


def test_a_model_whose_features_no_longer_match_keeps_the_row(db, app):
    """A model trained on two columns, registered on the trusted path (so it is signed) and deployed
    under a name of its own: the three-column table no longer fits it."""
    model = LinearRegression().fit(np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0]]), np.array([1.0, 2.0, 3.0]))
    name = "test09_two_features"
    for table in ("ml_prediction_errors", "ml_models", "ml_model_deployments", "ml_private.model_signatures",
                  "ml_model_versions"):
        db.execute(f"DELETE FROM {table} WHERE model_name = %s", [name])
    db.execute("INSERT INTO ml_models (model_name, model_data) VALUES (%s, %s)", [name, pickle.dumps(model)])
    rows, errors = counts(db)
    with db.transaction():
        db.execute("UPDATE ml_prediction_settings SET model_name = %s WHERE table_name = 'customer_data'", [name])
    try:
        row_id, predicted = app.execute("INSERT INTO customer_data (age, income, credit_score) VALUES (40, 60000, 700)"
                                        " RETURNING id, predicted_purchase").fetchone()
        assert predicted is None
        error = db.execute("SELECT error FROM ml_prediction_errors WHERE table_name = 'customer_data' AND row_id = %s"
                           " ORDER BY error_id DESC LIMIT 1", [row_id]).fetchone()[0]
        assert "model expects 2 features, the table supplies 3" in error
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            app.execute("SELECT ml.predict(%s, ARRAY[40, 60000, 700])", [name])
    finally:
        db.execute("UPDATE ml_prediction_settings SET model_name = 'purchase_predictor' WHERE table_name = 'customer_data'")
    assert counts(db) == (rows + 1, errors + 1)


def test_strict_mode_rejects_with_the_reason_and_stores_nothing(db, app):
    rows, errors = counts(db)
    with db.transaction():
        db.execute("UPDATE ml_prediction_settings SET on_failure = 'reject' WHERE table_name = 'customer_data'")
    try:
        with pytest.raises(psycopg.errors.NullValueNotAllowed, match="feature income is NULL"):
            app.execute("INSERT INTO customer_data (age, income, credit_score) VALUES (40, NULL, 700)")
    finally:
        db.execute("UPDATE ml_prediction_settings SET on_failure = 'log' WHERE table_name = 'customer_data'")
    assert counts(db) == (rows, errors)


def test_a_statement_timeout_cancels_a_slow_prediction_cleanly(db, app):
    """A statement that runs past the limit is cancelled as a whole (the trigger never swallows the
    cancel): no row, no error-log entry, and the session goes on."""
    rows, errors = counts(db)
    app.execute("SELECT ml.predict_purchase_amount(40, 60000, 700)")         # warm: the cold start is not the point
    app.execute("SET statement_timeout = '300ms'")
    with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
        app.execute("INSERT INTO customer_data (age, income, credit_score)"
                    " SELECT 18 + i % 50, 20000 + i, 300 + i % 500 FROM generate_series(1, 50000000) AS i")
    app.execute("RESET statement_timeout")
    assert counts(db) == (rows, errors)
    assert app.execute("SELECT 1").fetchone() == (1,)
