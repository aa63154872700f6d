"""sql/05_prediction.sql: predict_purchase (the talk's, and fixed), the kit's cached, batch and generic paths.

What must hold: every path predicts what scikit-learn predicts; NULL in gives NULL out; wrong input
gives a clear error with a SQLSTATE and a hint; a version deployed by another session is used from
the caller's next statement (autocommit, transaction, trigger, procedure) and never in the middle
of one; a batch equals its rows scored one by one; compiled tree ensembles equal scikit-learn.

The module trains its own models (names starting with test05_) and deletes them afterwards; the
versions of purchase_predictor it adds are deleted too, and the version that was deployed before
is deployed again.
"""
from __future__ import annotations

import hashlib
import pickle
import threading
import time

import numpy as np
import psycopg
import pytest

import pgmlkit

N_ROWS = 20000
CHECK_ROWS = 3000
PROBE = (30, 60000, 720)
FEATURES = ("age", "income", "credit_score")


def forget(conn, pattern="test05_%"):
    conn.execute("DELETE FROM ml_models WHERE model_name LIKE %s", [pattern])
    conn.execute("DELETE FROM ml_model_deployments WHERE model_name LIKE %s", [pattern])
    conn.execute("DELETE FROM ml_model_versions WHERE model_name LIKE %s", [pattern])


def deploy(conn, name, version):
    conn.execute("INSERT INTO ml_models (model_name, model_data, version)"
                 " SELECT model_name, model_data, version FROM ml_model_versions WHERE model_name = %s AND version = %s",
                 [name, version])


def linear_prediction(conn, version, x=PROBE):
    """What a linear purchase_predictor version predicts, from its registered coefficients,
    in the order the kit's Python computes it (so equality is exact)."""
    p = conn.execute("SELECT parameters FROM ml_model_versions WHERE model_name = 'purchase_predictor'"
                     " AND version = %s", [version]).fetchone()[0]
    c = p["coefficients"]
    return p["intercept"] + c["age"] * x[0] + c["income"] * x[1] + c["credit_score"] * x[2]


def client_model(conn, name):
    data, sha = conn.execute(
        "SELECT v.model_data, v.model_sha256 FROM ml_models m JOIN ml_model_versions v USING (model_name, version)"
        " WHERE m.model_name = %s", [name]).fetchone()
    assert hashlib.sha256(data).hexdigest() == sha
    return pickle.loads(data)


def customer_matrix(conn, n=CHECK_ROWS):
    rows = conn.execute("SELECT id, age, income::float8, credit_score FROM customer_data ORDER BY id LIMIT %s",
                        [n]).fetchall()
    return [r[0] for r in rows], np.array([r[1:] for r in rows], dtype=np.float64)


def assert_same(got, want, rel=1e-9):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    worst = np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))) if got.size else 0.0
    assert worst <= rel, f"largest relative difference {worst:.3e}"


def error_of(conn, query, params=None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(query, params)
    return caught.value


@pytest.fixture(scope="module")
def kit():
    """sql/02, 04, 05 on N_ROWS seeded customers; two versions of purchase_predictor (v_full
    deployed, v_small registered), and tree models under test05_ names."""
    with pgmlkit.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS customer_data CASCADE")    # no triggers of later notebooks on it
        for name in ("02_sample_data.sql", "04_training.sql", "05_prediction.sql"):
            pgmlkit.run_sql_file(name, conn)
        conn.execute("SELECT load_sample_customers(%s, 42)", [N_ROWS])
        forget(conn)
        before = conn.execute("SELECT version FROM ml_models WHERE model_name = 'purchase_predictor'").fetchone()
        ours_from = conn.execute("SELECT coalesce(max(version), 0) FROM ml_model_versions"
                                 " WHERE model_name = 'purchase_predictor'").fetchone()[0]
        v_small = conn.execute("SELECT train_purchase_model(promote => false, max_rows => 2000)").fetchone()[0]
        v_full = conn.execute("SELECT train_purchase_model()").fetchone()[0]
        conn.execute("SELECT train_purchase_model('test05_forest', 'random_forest', max_rows => 5000)")
        conn.execute("SELECT train_purchase_model('test05_tree', 'decision_tree')")
        conn.execute("SELECT train_purchase_model('test05_boost', 'gradient_boosting', max_rows => 5000)")
    yield {"v_full": v_full, "v_small": v_small}
    with pgmlkit.connect() as conn:
        forget(conn)
        if before:
            deploy(conn, "purchase_predictor", before[0])
        else:
            conn.execute("DELETE FROM ml_models WHERE model_name = 'purchase_predictor'")
        conn.execute("DELETE FROM ml_model_deployments WHERE model_name = 'purchase_predictor' AND version > %s",
                     [ours_from])
        conn.execute("DELETE FROM ml_model_versions WHERE model_name = 'purchase_predictor' AND version > %s",
                     [ours_from])


@pytest.fixture()
def db(kit):
    """A fresh session with the full-data linear model deployed (tests may deploy another)."""
    with pgmlkit.connect() as conn:
        deploy(conn, "purchase_predictor", kit["v_full"])
        yield conn
        deploy(conn, "purchase_predictor", kit["v_full"])


# ---- the talk's function ---------------------------------------------------------------------------
def test_the_slide_version_fails_twice_and_the_fixed_one_predicts(db):
    pgmlkit.run_sql_block("05_prediction.sql", "predict_purchase_as_on_the_slide", db)
    error = error_of(db, "SELECT predict_purchase(30, 60000, 720)")
    assert "unsupported operand type(s) for *: 'decimal.Decimal' and 'float'" in error.diag.message_primary
    pgmlkit.run_sql_block("05_prediction.sql", "predict_purchase_first_fix", db)
    error = error_of(db, "SELECT predict_purchase(30, 60000, 720)")
    assert error.diag.message_primary.startswith('invalid input syntax for type numeric: "np.float64(')
    pgmlkit.run_sql_file("05_prediction.sql", db)                    # the whole file leaves the fix
    (value,) = db.execute("SELECT predict_purchase(30, 60000, 720)").fetchone()
    model = client_model(db, "purchase_predictor")
    assert float(value) == pytest.approx(float(model.predict(np.array([PROBE], dtype=float))[0]), rel=1e-12)


def test_volatility_strictness_and_parallel_safety_are_declared(db):
    rows = dict((r[0], r[1:]) for r in db.execute(
        "SELECT proname, provolatile, proisstrict, proparallel FROM pg_proc WHERE proname = ANY(%s)",
        [["predict_purchase", "predict_purchase_cached", "predict_purchase_batch", "ml_predict", "ml_predict_batch"]]))
    assert rows["predict_purchase"] == ("v", True, "u")              # as on the slide (+ STRICT)
    for name in ("predict_purchase_cached", "predict_purchase_batch", "ml_predict", "ml_predict_batch"):
        assert rows[name] == ("s", True, "u"), name


# ---- every path predicts what scikit-learn predicts --------------------------------------------------
def test_every_linear_path_equals_sklearn(db):
    ids, X = customer_matrix(db, 500)
    want = client_model(db, "purchase_predictor").predict(X)
    per_row = db.execute(
        "SELECT predict_purchase(age, income, credit_score)::float8, predict_purchase_sklearn_cached(age, income, credit_score),"
        "       predict_purchase_checked_per_row(age, income, credit_score), predict_purchase_cached(age, income, credit_score),"
        "       ml_predict('purchase_predictor', ARRAY[age, income, credit_score])"
        "  FROM customer_data ORDER BY id LIMIT 500").fetchall()
    for column in zip(*per_row):
        assert_same(column, want)
    first = "(SELECT * FROM customer_data ORDER BY id LIMIT 500) AS c"
    (batch,) = db.execute(
        "SELECT predict_purchase_batch(array_agg(age ORDER BY id), array_agg(income ORDER BY id),"
        f"                              array_agg(credit_score ORDER BY id)) FROM {first}").fetchone()
    (flat,) = db.execute(                                      # row-major: row 1's features, row 2's, ...
        "SELECT ml_predict_batch('purchase_predictor', array_agg(x ORDER BY id, n))"
        f"  FROM {first}, unnest(ARRAY[age, income, credit_score]::float8[]) WITH ORDINALITY AS u(x, n)").fetchone()
    (two_d,) = db.execute(
        "SELECT ml_predict_batch('purchase_predictor', array_agg(ARRAY[age, income, credit_score]::float8[] ORDER BY id))"
        f"  FROM {first}").fetchone()
    for column in (batch, flat, two_d):
        assert_same(column, want)


def test_batch_equals_per_row_exactly(db):
    per_row, batch = db.execute(
        "SELECT array_agg(predict_purchase_cached(age, income, credit_score) ORDER BY id),"
        "       predict_purchase_batch(array_agg(age ORDER BY id), array_agg(income ORDER BY id), array_agg(credit_score ORDER BY id))"
        "  FROM customer_data").fetchone()
    assert len(batch) == N_ROWS + 3
    assert batch == per_row                                           # same operations, same order


def test_batch_predictions_join_back_to_their_rows(db):
    rows = db.execute(
        "WITH batch AS (SELECT array_agg(id ORDER BY id) AS ids,"
        "                      predict_purchase_batch(array_agg(age ORDER BY id), array_agg(income ORDER BY id),"
        "                                             array_agg(credit_score ORDER BY id)) AS predictions"
        "                 FROM customer_data WHERE id <= 50)"
        " SELECT c.id, p.predicted, predict_purchase_cached(c.age, c.income, c.credit_score)"
        "   FROM batch, unnest(batch.predictions) WITH ORDINALITY AS p(predicted, n), customer_data c"
        "  WHERE c.id = batch.ids[p.n] ORDER BY c.id").fetchall()
    assert [r[0] for r in rows] == list(range(1, 51))
    assert all(r[1] == r[2] for r in rows)


# ---- tree ensembles: compiled, identical to scikit-learn ------------------------------------------------
def register_client_model(conn, name, model):
    conn.execute("INSERT INTO ml_models (model_name, model_data) VALUES (%s, %s)", [name, pickle.dumps(model)])


@pytest.fixture(scope="module")
def client_models(kit):
    """Models trained here and written straight into ml_models, as the talk does: classic
    GradientBoosting, ExtraTrees, a Ridge (linear, no registry coefficients) and a classifier."""
    from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    with pgmlkit.connect() as conn:
        _, X = customer_matrix(conn, 4000)
        y = np.array([r[0] for r in conn.execute(
            "SELECT purchase_amount::float8 FROM customer_data ORDER BY id LIMIT 4000")], dtype=np.float64)
        models = {
            "test05_gbr": GradientBoostingRegressor(n_estimators=60, max_depth=3, random_state=0).fit(X, y),
            "test05_extra": ExtraTreesRegressor(n_estimators=20, max_depth=8, random_state=0).fit(X, y),
            "test05_ridge": Ridge(alpha=1.0).fit(X, y),
            "test05_classifier": LogisticRegression(max_iter=500).fit(X / X.max(axis=0), (y > 1000).astype(int)),
        }
        for name, model in models.items():
            register_client_model(conn, name, model)
    return models


@pytest.mark.parametrize("name, path", [
    ("test05_forest", "compiled trees"), ("test05_tree", "compiled trees"), ("test05_boost", "compiled trees"),
    ("test05_gbr", "compiled trees"), ("test05_extra", "compiled trees"), ("test05_ridge", "linear coefficients"),
    ("purchase_predictor", "linear coefficients (registry)")])
def test_fast_paths_equal_sklearn_on_thousands_of_rows(db, client_models, name, path):
    ids, X = customer_matrix(db)
    want = client_model(db, name).predict(X)
    per_row = [v for (v,) in db.execute(
        "SELECT ml_predict(%s, ARRAY[age, income, credit_score]) FROM customer_data ORDER BY id LIMIT %s",
        [name, CHECK_ROWS])]
    (batch,) = db.execute(
        "SELECT ml_predict_batch(%s, array_agg(ARRAY[age, income, credit_score]::float8[] ORDER BY id))"
        "  FROM (SELECT * FROM customer_data ORDER BY id LIMIT %s) c", [name, CHECK_ROWS]).fetchone()
    assert_same(per_row, want)
    assert_same(batch, want)
    (used,) = db.execute("SELECT path FROM ml_predict_cache() WHERE model_name = %s", [name]).fetchone()
    assert used.startswith(path)


def test_tree_inputs_on_the_float32_boundary_of_every_split_equal_sklearn(db):
    """scikit-learn compares float32(x) <= threshold; the server's trees (pgmlkit_server.trees) must
    send inputs right at each split's rounding boundary, and one float step either side, the same way."""
    model = client_model(db, "test05_tree")
    rows = []
    for f, t in zip(model.tree_.feature.tolist(), model.tree_.threshold.tolist()):
        if f < 0:
            continue
        low = np.float32(t) if float(np.float32(t)) <= t else np.nextafter(np.float32(t), np.float32(-np.inf))
        boundary = (float(low) + float(np.nextafter(low, np.float32(np.inf)))) / 2
        for x in (t, boundary, np.nextafter(boundary, -np.inf), np.nextafter(boundary, np.inf)):
            row = [45.0, 60000.0, 700.0]
            row[f] = float(x)
            rows.append(row)
    X = np.array(rows[:3000])
    got = [v for (v,) in db.execute(
        "SELECT ml_predict('test05_tree', ARRAY[a, b, c]) FROM unnest(%s::float8[], %s::float8[], %s::float8[])"
        " WITH ORDINALITY AS u(a, b, c, n) ORDER BY n", [X[:, 0].tolist(), X[:, 1].tolist(), X[:, 2].tolist()])]
    assert len(X) > 100 and got == model.predict(X).tolist()


def test_trees_too_big_to_compile_are_walked_with_the_same_results(db):
    db.execute("""DO LANGUAGE plpython3u $$
plpy.execute("SELECT ml_predict_runtime()")
GD["ml_predict_runtime"].limits["compile_max_nodes"] = 0
GD["ml_fast"].clear()
$$""")
    ids, X = customer_matrix(db, 500)
    want = client_model(db, "test05_forest").predict(X)
    got = [v for (v,) in db.execute("SELECT ml_predict('test05_forest', ARRAY[age, income, credit_score])"
                                    "  FROM customer_data ORDER BY id LIMIT 500")]
    assert_same(got, want)
    (used,) = db.execute("SELECT path FROM ml_predict_cache() WHERE model_name = 'test05_forest'").fetchone()
    assert used.startswith("walked trees")


def test_a_big_forest_is_walked_first_and_compiled_after_500_rows_with_the_same_results(kit):
    query = ("SELECT array_agg(ml_predict('test05_forest', ARRAY[age, income, credit_score]) ORDER BY id)"
             "  FROM (SELECT * FROM customer_data ORDER BY id LIMIT %s) AS c")
    with pgmlkit.connect() as fresh:
        (first,) = fresh.execute(query, [400]).fetchone()
        (path,) = fresh.execute("SELECT path FROM ml_predict_cache() WHERE model_name = 'test05_forest'").fetchone()
        assert path.startswith("walked trees (100 trees,") and path.endswith("compiled after 500 rows")
        (again,) = fresh.execute(query, [400]).fetchone()       # crosses 500 predictions: compiles
        (path,) = fresh.execute("SELECT path FROM ml_predict_cache() WHERE model_name = 'test05_forest'").fetchone()
        assert path.startswith("compiled trees (100 trees,")
    assert again == first                                        # walked and compiled: the same numbers


def test_a_classifier_is_served_by_its_own_predict(db, client_models):
    x = np.array([[30 / 75, 60000 / 135000, 720 / 850]])
    (value,) = db.execute("SELECT ml_predict('test05_classifier', %s::float8[])", [x[0].tolist()]).fetchone()
    assert value == float(client_models["test05_classifier"].predict(x)[0])
    (used,) = db.execute("SELECT path FROM ml_predict_cache() WHERE model_name = 'test05_classifier'").fetchone()
    assert used == "sklearn predict"


# ---- NULL, wrong types, NaN/Infinity, missing models ---------------------------------------------------
def test_null_inputs_give_null(db):
    row = db.execute(
        "SELECT predict_purchase(NULL, 60000, 720), predict_purchase_cached(30, NULL, 720),"
        "       predict_purchase_batch(NULL, ARRAY[1.0], ARRAY[1]), ml_predict(NULL, ARRAY[1.0, 2, 3]),"
        "       ml_predict('purchase_predictor', NULL), ml_predict('purchase_predictor', ARRAY[30, NULL, 720]::float8[]),"
        "       ml_predict('test05_forest', ARRAY[30, NULL, 720]::float8[]), ml_predict_batch('purchase_predictor', NULL)"
    ).fetchone()
    assert row == (None,) * 8
    batch, flat = db.execute(
        "SELECT predict_purchase_batch(ARRAY[30, NULL, 40], ARRAY[60000, 50000, NULL]::float8[], ARRAY[720, 700, 700]),"
        "       ml_predict_batch('test05_forest', ARRAY[30, 60000, 720, 40, NULL, 700]::float8[])").fetchone()
    assert batch[0] == linear_prediction(db, db.execute(
        "SELECT version FROM ml_models WHERE model_name = 'purchase_predictor'").fetchone()[0])
    assert batch[1:] == [None, None]
    assert flat[0] is not None and flat[1] is None


def test_wrong_types_are_rejected_by_postgresql(db):
    error = error_of(db, "SELECT predict_purchase_cached('thirty', 60000, 720)")
    assert isinstance(error, psycopg.errors.InvalidTextRepresentation)
    error = error_of(db, "SELECT ml_predict('purchase_predictor', ARRAY['a', 'b', 'c'])")
    assert isinstance(error, psycopg.errors.UndefinedFunction)


def test_wrong_number_of_features_is_a_clear_error(db):
    error = error_of(db, "SELECT ml_predict('purchase_predictor', ARRAY[30, 60000]::float8[])")
    assert error.diag.sqlstate == "22023"
    assert "expects 3 features (age, income, credit_score), got 2" in error.diag.message_primary
    error = error_of(db, "SELECT ml_predict_batch('purchase_predictor', ARRAY[30, 60000, 720, 40]::float8[])")
    assert error.diag.sqlstate == "22023"
    assert "4 values are not whole rows of 3 features" in error.diag.message_primary
    assert error.diag.message_hint


def test_arrays_of_different_lengths_are_a_clear_error(db):
    error = error_of(db, "SELECT predict_purchase_batch(ARRAY[30, 40], ARRAY[60000.0], ARRAY[720, 700])")
    assert error.diag.sqlstate == "22023"
    assert "different lengths (age 2, income 1, credit_score 2)" in error.diag.message_primary
    assert "ORDER BY" in error.diag.message_hint


@pytest.mark.parametrize("query", [
    "SELECT predict_purchase_cached(30, 'NaN', 720)",
    "SELECT predict_purchase_cached(30, 'Infinity', 720)",
    "SELECT ml_predict('purchase_predictor', ARRAY[30, '-Infinity', 720]::float8[])",
    "SELECT ml_predict('test05_forest', ARRAY[30, 'NaN', 720]::float8[])",
    "SELECT ml_predict('test05_forest', ARRAY[30, 'Infinity', 720]::float8[])",
    "SELECT predict_purchase_batch(ARRAY[30, 40], ARRAY[60000, 'NaN']::float8[], ARRAY[720, 700])",
    "SELECT ml_predict_batch('test05_forest', ARRAY[30, 60000, 720, 40, 'Infinity', 700]::float8[])",
    "SELECT ml_predict('purchase_predictor', ARRAY[1e308, 60000, 720])",   # finite input, infinite result
])
def test_nan_and_infinity_are_errors_not_predictions(db, query):
    error = error_of(db, query)
    assert error.diag.sqlstate == "22023"
    assert "no finite prediction" in error.diag.message_primary
    assert "NULL" in error.diag.message_hint


def test_a_missing_model_is_a_clear_error_with_a_hint(db):
    error = error_of(db, "SELECT ml_predict('test05_nothing', ARRAY[1.0, 2, 3])")
    assert error.diag.sqlstate == "P0002"
    assert "no model named 'test05_nothing' is deployed" in error.diag.message_primary
    assert "train_purchase_model('test05_nothing')" in error.diag.message_hint
    error = error_of(db, "SELECT ml_predict_batch('test05_nothing', ARRAY[1.0, 2, 3])")
    assert error.diag.sqlstate == "P0002"


def test_a_model_with_other_features_is_refused_by_predict_purchase_cached(db):
    import pandas as pd
    from sklearn.linear_model import LinearRegression
    _, X = customer_matrix(db, 500)
    swapped = pd.DataFrame(X[:, [0, 2, 1]], columns=["age", "credit_score", "income"])
    register_client_model(db, "purchase_predictor", LinearRegression().fit(swapped, X[:, 0]))
    error = error_of(db, "SELECT predict_purchase_cached(30, 60000, 720)")
    assert error.diag.sqlstate == "42804"
    assert "expects the features ['age', 'credit_score', 'income'], not ['age', 'income', 'credit_score']" \
        in error.diag.message_primary
    # ml_predict takes the features in the model's own order
    (value,) = db.execute("SELECT ml_predict('purchase_predictor', ARRAY[30, 720, 60000]::float8[])").fetchone()
    assert value == pytest.approx(30.0, abs=1e-6)                   # the model learned y = age


# ---- freshness: a new version is used from the next statement on -------------------------------------
def test_another_sessions_deployment_is_used_at_the_next_statement(db, kit):
    v_full, v_small = kit["v_full"], kit["v_small"]
    assert linear_prediction(db, v_full) != linear_prediction(db, v_small)
    (before,) = db.execute("SELECT predict_purchase_cached(30, 60000, 720)").fetchone()
    assert before == linear_prediction(db, v_full)
    with pgmlkit.connect() as other:
        deploy(other, "purchase_predictor", v_small)
    row = db.execute("SELECT predict_purchase_cached(30, 60000, 720),"
                     "       ml_predict('purchase_predictor', ARRAY[30, 60000, 720]),"
                     "       (predict_purchase_batch(ARRAY[30], ARRAY[60000.0], ARRAY[720]))[1]").fetchone()
    assert row == (linear_prediction(db, v_small),) * 3
    assert db.execute("SELECT version FROM ml_predict_cache() WHERE model_name = 'purchase_predictor'"
                      ).fetchone()[0] == v_small


def test_inside_a_transaction_the_next_statement_sees_the_new_version(db, kit):
    with db.transaction():
        assert db.execute("SELECT predict_purchase_cached(30, 60000, 720)").fetchone()[0] == linear_prediction(db, kit["v_full"])
        with pgmlkit.connect() as other:
            deploy(other, "purchase_predictor", kit["v_small"])
        assert db.execute("SELECT predict_purchase_cached(30, 60000, 720)").fetchone()[0] == linear_prediction(db, kit["v_small"])
        with pgmlkit.connect() as other:
            deploy(other, "purchase_predictor", kit["v_full"])
        assert db.execute("SELECT ml_predict('purchase_predictor', ARRAY[30, 60000, 720])").fetchone()[0] \
            == linear_prediction(db, kit["v_full"])


def test_repeatable_read_keeps_the_version_of_its_snapshot(db, kit):
    db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    try:
        assert db.execute("SELECT predict_purchase_cached(30, 60000, 720)").fetchone()[0] == linear_prediction(db, kit["v_full"])
        with pgmlkit.connect() as other:
            deploy(other, "purchase_predictor", kit["v_small"])
        assert db.execute("SELECT predict_purchase_cached(30, 60000, 720)").fetchone()[0] == linear_prediction(db, kit["v_full"])
    finally:
        db.execute("COMMIT")
    assert db.execute("SELECT predict_purchase_cached(30, 60000, 720)").fetchone()[0] == linear_prediction(db, kit["v_small"])


def deploy_later(name, version, delay):
    def run():
        time.sleep(delay)
        with pgmlkit.connect() as other:
            deploy(other, name, version)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_one_statement_uses_one_version_even_if_another_is_deployed_meanwhile(db, kit):
    thread = deploy_later("purchase_predictor", kit["v_small"], 0.3)
    rows = db.execute("SELECT g, predict_purchase_cached(30, 60000, 720) FROM generate_series(1, 8) AS g,"
                      " LATERAL (SELECT pg_sleep(0.12) WHERE g > 0) AS pause").fetchall()
    thread.join()
    assert {value for _, value in rows} == {linear_prediction(db, kit["v_full"])}
    assert db.execute("SELECT predict_purchase_cached(30, 60000, 720)").fetchone()[0] == linear_prediction(db, kit["v_small"])


def test_a_row_trigger_uses_the_new_version_from_the_next_insert(db, kit):
    db.execute("DROP TABLE IF EXISTS test05_scored")
    db.execute("CREATE TABLE test05_scored (id serial, age int, income numeric, credit_score int, predicted float8)")
    db.execute("CREATE OR REPLACE FUNCTION test05_score() RETURNS trigger LANGUAGE plpgsql AS $$"
               " BEGIN NEW.predicted := predict_purchase_cached(NEW.age, NEW.income, NEW.credit_score); RETURN NEW; END $$")
    db.execute("CREATE TRIGGER test05_score BEFORE INSERT ON test05_scored FOR EACH ROW EXECUTE FUNCTION test05_score()")
    try:
        insert = "INSERT INTO test05_scored (age, income, credit_score) VALUES (30, 60000, 720) RETURNING predicted"
        assert db.execute(insert).fetchone()[0] == linear_prediction(db, kit["v_full"])
        with pgmlkit.connect() as other:
            deploy(other, "purchase_predictor", kit["v_small"])
        assert db.execute(insert).fetchone()[0] == linear_prediction(db, kit["v_small"])
        with db.transaction():
            with pgmlkit.connect() as other:
                deploy(other, "purchase_predictor", kit["v_full"])
            assert db.execute(insert).fetchone()[0] == linear_prediction(db, kit["v_full"])
    finally:
        db.execute("DROP TABLE test05_scored")
        db.execute("DROP FUNCTION test05_score()")


def test_a_procedure_sees_the_new_version_after_its_commit_but_not_within_a_statement(db, kit):
    db.execute("DROP TABLE IF EXISTS test05_log")
    db.execute("CREATE TABLE test05_log (step int, predicted float8)")
    db.execute("""CREATE OR REPLACE PROCEDURE test05_steps() LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test05_log VALUES (1, predict_purchase_cached(30, 60000, 720));
    COMMIT;
    PERFORM pg_sleep(0.8);                -- another session deploys meanwhile
    INSERT INTO test05_log VALUES (2, predict_purchase_cached(30, 60000, 720));   -- a new transaction
    COMMIT;
END $$""")
    try:
        thread = deploy_later("purchase_predictor", kit["v_small"], 0.3)
        db.execute("CALL test05_steps()")
        thread.join()
        steps = dict(db.execute("SELECT step, predicted FROM test05_log").fetchall())
        assert steps == {1: linear_prediction(db, kit["v_full"]), 2: linear_prediction(db, kit["v_small"])}
    finally:
        db.execute("DROP PROCEDURE test05_steps()")
        db.execute("DROP TABLE test05_log")


def test_this_sessions_own_deployment_is_seen_within_the_same_statement(db, kit):
    db.execute("DROP TABLE IF EXISTS test05_log")
    db.execute("CREATE TABLE test05_log (step int, predicted float8)")
    try:
        db.execute(f"""DO $$
BEGIN
    INSERT INTO test05_log VALUES (1, predict_purchase_cached(30, 60000, 720));
    INSERT INTO ml_models (model_name, model_data, version)
    SELECT model_name, model_data, version FROM ml_model_versions
     WHERE model_name = 'purchase_predictor' AND version = {int(kit['v_small'])};
    INSERT INTO test05_log VALUES (2, predict_purchase_cached(30, 60000, 720));
END $$""")
        steps = dict(db.execute("SELECT step, predicted FROM test05_log").fetchall())
        assert steps == {1: linear_prediction(db, kit["v_full"]), 2: linear_prediction(db, kit["v_small"])}
    finally:
        db.execute("DROP TABLE test05_log")


# ---- sessions, parallel workers, cold start --------------------------------------------------------------
def test_a_new_session_predicts_linearly_without_importing_sklearn_or_numpy(kit):
    with pgmlkit.connect() as fresh:
        notices = []
        fresh.add_notice_handler(lambda d: notices.append(d.message_primary))
        fresh.execute("SELECT predict_purchase_cached(30, 60000, 720)")
        fresh.execute("DO LANGUAGE plpython3u $$import sys; plpy.notice(('sklearn' in sys.modules, 'numpy' in sys.modules))$$")
        assert notices == ["(False, False)"]                         # the registry's coefficients suffice


def test_queries_calling_the_functions_are_never_planned_parallel(db):
    """PL/Python runs plpy.execute() in a subtransaction, which PostgreSQL forbids in parallel mode
    (and PostgreSQL 15 can crash the backend afterwards: never label such a function PARALLEL SAFE).
    The kit's functions are PARALLEL UNSAFE, so even forced parallelism plans them in one process."""
    for setting in ("parallel_setup_cost = 0", "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0",
                    "max_parallel_workers_per_gather = 2", "force_parallel_mode = on"):
        db.execute(f"SET {setting}")
    for call in ("predict_purchase_cached(age, income, credit_score)",
                 "ml_predict('purchase_predictor', ARRAY[age, income, credit_score])",
                 "ml_predict('test05_forest', ARRAY[age, income, credit_score])"):
        query = f"SELECT sum({call}) FROM customer_data WHERE id <= 2000"
        assert "Gather" not in "\n".join(r[0] for r in db.execute("EXPLAIN (COSTS OFF) " + query))
        assert db.execute(query).fetchone()[0] is not None
    # without the function, the same scan is parallel: the settings above are in force
    assert "Gather" in "\n".join(r[0] for r in db.execute(
        "EXPLAIN (COSTS OFF) SELECT sum(age) FROM customer_data WHERE id <= 2000"))
