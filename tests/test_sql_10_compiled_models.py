"""sql/10: models compiled to SQL agree with scikit-learn, say where they came from, and notice drift.

Equivalence is checked on the client with scikit-learn's own predict() on the registry's bytes (not
with the server's helpers), on thousands of rows and on inputs placed exactly on the split thresholds.
"""
from __future__ import annotations

import hashlib
import pickle
import re

import numpy as np
import pandas as pd
import psycopg
import pytest

FEATURES = ["age", "income", "credit_score"]
ROWS = 5000


@pytest.fixture()
def db(conn, apply_sql):
    apply_sql("02_sample_data.sql", "04_training.sql", "05_prediction.sql", "10_compiled_models.sql")
    if conn.execute("SELECT count(*) FROM customer_data").fetchone()[0] < ROWS:
        conn.execute("SELECT load_sample_customers(20000, 42)")
    conn.execute("DELETE FROM ml_compiled_functions WHERE function_name LIKE 'test10\\_%'")
    for (signature,) in conn.execute("SELECT oid::regprocedure::text FROM pg_proc WHERE proname LIKE 'test10\\_%'").fetchall():
        conn.execute(f"DROP FUNCTION {signature}")
    return conn


def deployed_model(conn, name):
    """The deployed version's model, unpickled here after checking its digest, and its version."""
    data, digest, version = conn.execute(
        "SELECT v.model_data, v.model_sha256, v.version FROM ml_models m"
        " JOIN ml_model_versions v USING (model_name, version) WHERE m.model_name = %s", [name]).fetchone()
    assert hashlib.sha256(data).hexdigest() == digest
    return pickle.loads(data), version


def max_rel_diff(conn, function, name, rows=ROWS):
    """max |SQL - sklearn| / max(1, |sklearn|) on the first `rows` rows, against the *deployed* model."""
    model, _ = deployed_model(conn, name)
    data = conn.execute(f"SELECT age::float8, income::float8, credit_score::float8,"
                        f" {function}(age, income, credit_score) FROM customer_data ORDER BY id LIMIT %s",
                        [rows]).fetchall()
    X = np.array([r[:3] for r in data], dtype=np.float64)
    got = np.array([r[3] for r in data], dtype=np.float64)
    want = model.predict(pd.DataFrame(X, columns=FEATURES) if hasattr(model, "feature_names_in_") else X)
    assert len(got) == rows
    return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))


def assert_matches_deployed(conn, function, name):
    diff = max_rel_diff(conn, function, name)
    assert diff <= 1e-9, f"{function} disagrees with the deployed {name} by {diff:.3g} (relative)"


def direct_write(conn, name, model):
    """Register a client-trained model the talk's way: INSERT INTO ml_models (the trigger versions it)."""
    conn.execute("INSERT INTO ml_models (model_name, model_data) VALUES (%s, %s)", [name, pickle.dumps(model)])


def training_frame(conn, rows=ROWS):
    data = conn.execute("SELECT age::float8, income::float8, credit_score::float8, purchase_amount::float8"
                        " FROM customer_data ORDER BY id LIMIT %s", [rows]).fetchall()
    df = pd.DataFrame(data, columns=FEATURES + ["purchase_amount"])
    return df[FEATURES], df["purchase_amount"]


@pytest.mark.parametrize("algorithm, params", [
    ("linear", "{}"),
    ("decision_tree", '{"max_depth": 8}'),
    ("random_forest", '{"n_estimators": 8, "max_depth": 6}'),
    ("gradient_boosting", '{"max_iter": 15}'),
])
def test_compiled_function_equals_sklearn_predict(db, algorithm, params):
    name = f"test10_{algorithm}"
    db.execute("SELECT train_purchase_model(%s, %s, true, %s, 0.2, 42, 10000)", [name, algorithm, params])
    version = db.execute("SELECT ml_deploy_compiled(%s, %s)", [name, f"{name}_sql"]).fetchone()[0]
    assert version == db.execute("SELECT version FROM ml_models WHERE model_name = %s", [name]).fetchone()[0]
    assert_matches_deployed(db, f"{name}_sql", name)
    # The server-side check says the same.
    rows, diff = db.execute("SELECT rows_compared, max_rel_diff FROM ml_compiled_check(%s, 3000)",
                            [f"{name}_sql"]).fetchone()
    assert rows == 3000 and diff <= 1e-9


@pytest.mark.parametrize("kind", ["pipeline", "classic_gbr", "extra_trees"])
def test_models_written_directly_compile_too(db, kind):
    from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = training_frame(db)
    model = {"pipeline": make_pipeline(StandardScaler(), Ridge(alpha=3.0)),
             "classic_gbr": GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0),
             "extra_trees": ExtraTreesRegressor(n_estimators=5, max_depth=5, random_state=0)}[kind].fit(X, y)
    name = f"test10_{kind}"
    direct_write(db, name, model)
    db.execute("SELECT ml_deploy_compiled(%s, %s)", [name, f"{name}_sql"])
    assert_matches_deployed(db, f"{name}_sql", name)


def test_tree_thresholds_are_compared_as_scikit_learn_does(db):
    """scikit-learn compares float32(x) with each threshold; inputs right at the cut, and one float8
    step either side of it, must land in the same leaf in SQL."""
    name = "test10_decision_tree_edges"
    db.execute("SELECT train_purchase_model(%s, 'decision_tree', true, '{\"max_depth\": 10}', 0.2, 42, 10000)", [name])
    db.execute("SELECT ml_deploy_compiled(%s, %s)", [name, f"{name}_sql"])
    model, _ = deployed_model(db, name)
    tree = model.tree_
    base = np.array([45.0, 60000.0, 700.0])
    probes = []
    for f, t in zip(tree.feature, tree.threshold):
        if f < 0:
            continue
        f32 = np.float32(t)
        for x in (t, float(f32), np.nextafter(t, -np.inf), np.nextafter(t, np.inf),
                  float(np.nextafter(f32, np.float32(np.inf))), float(np.nextafter(f32, np.float32(-np.inf)))):
            for y in (x, (float(np.float32(x)) + float(np.nextafter(np.float32(x), np.float32(np.inf)))) / 2):
                row = base.copy()
                row[f] = y
                probes.append(row)
    X = np.array(probes)
    want = model.predict(X)
    got = [db.execute(f"SELECT {name}_sql(%s, %s, %s)", [float(a), float(b), float(c)]).fetchone()[0]
           for a, b, c in X.tolist()]
    wrong = [(row.tolist(), g, w) for row, g, w in zip(X, got, want) if g != w]
    assert len(probes) > 100 and not wrong, wrong[:3]


def test_the_planner_inlines_the_function(db):
    db.execute("SELECT train_purchase_model('test10_linear', 'linear', true, '{}', 0.2, 42, 5000)")
    db.execute("SELECT ml_deploy_compiled('test10_linear', 'test10_linear_sql')")
    plan = "\n".join(r[0] for r in db.execute(
        "EXPLAIN VERBOSE SELECT test10_linear_sql(age, income, credit_score) FROM customer_data"))
    assert "test10_linear_sql" not in plan and "* (income)::double precision" in plan, plan
    volatility, language, parallel = db.execute(
        "SELECT provolatile, l.lanname, proparallel FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
        " WHERE proname = 'test10_linear_sql'").fetchone()
    assert (volatility, language, parallel) == ("i", "sql", "s")


def test_null_feature_gives_null(db):
    db.execute("SELECT train_purchase_model('test10_decision_tree', 'decision_tree', true, '{}', 0.2, 42, 5000)")
    db.execute("SELECT ml_deploy_compiled('test10_decision_tree', 'test10_decision_tree_sql')")
    db.execute("SELECT train_purchase_model('test10_linear', 'linear', true, '{}', 0.2, 42, 5000)")
    db.execute("SELECT ml_deploy_compiled('test10_linear', 'test10_linear_sql')")
    assert db.execute("SELECT test10_decision_tree_sql(30, NULL, 700), test10_linear_sql(NULL, 1, 1)").fetchone() == (None, None)


def test_provenance_comment_and_table(db):
    db.execute("SELECT train_purchase_model('test10_linear', 'linear', true, '{}', 0.2, 42, 5000)")
    version = db.execute("SELECT ml_deploy_compiled('test10_linear', 'test10_linear_sql')").fetchone()[0]
    comment = db.execute("SELECT obj_description('test10_linear_sql(float8, float8, float8)'::regprocedure)").fetchone()[0]
    digest = db.execute("SELECT model_sha256 FROM ml_model_versions WHERE model_name = 'test10_linear' AND version = %s",
                        [version]).fetchone()[0]
    assert f"model test10_linear version {version} " in comment and digest in comment
    row = db.execute("SELECT model_name, version, model_sha256, algorithm, features FROM ml_compiled_functions"
                     " WHERE function_name = 'test10_linear_sql'").fetchone()
    assert row == ("test10_linear", version, digest, "LinearRegression", FEATURES)
    text = db.execute("SELECT ml_compile_to_sql('test10_linear', 'x', %s)", [version]).fetchone()[0]
    assert text.startswith("CREATE OR REPLACE FUNCTION x(age double precision, income double precision,")
    assert "IMMUTABLE PARALLEL SAFE" in text and "plpython" not in text


def test_retrain_without_recompiling_is_detected(db):
    name, function = "test10_linear", "test10_linear_sql"
    db.execute("SELECT train_purchase_model(%s, 'linear', true, '{}', 0.2, 42, 2000)", [name])
    db.execute("SELECT ml_deploy_compiled(%s, %s)", [name, function])
    assert db.execute("SELECT ml_compiled_is_current(%s)", [function]).fetchone()[0] is True
    assert_matches_deployed(db, function, name)

    new = db.execute("SELECT train_purchase_model(%s, 'linear', true, '{}', 0.2, 7, 20000)", [name]).fetchone()[0]
    assert db.execute("SELECT ml_compiled_is_current(%s)", [function]).fetchone()[0] is False
    compiled, deployed, reason = db.execute(
        "SELECT compiled_version, deployed_version, reason FROM ml_compiled_status() WHERE function_name = %s",
        [function]).fetchone()
    assert deployed == new and compiled == new - 1 and "ml_deploy_compiled" in reason
    with pytest.raises(AssertionError, match="disagrees"):
        assert_matches_deployed(db, function, name)          # the pair has drifted: the check sees it
    assert db.execute("SELECT max_abs_diff FROM ml_compiled_check(%s, 2000)", [function]).fetchone()[0] > 1e-6

    db.execute("SELECT ml_deploy_compiled(%s, %s)", [name, function])
    assert db.execute("SELECT ml_compiled_is_current(%s)", [function]).fetchone()[0] is True
    assert_matches_deployed(db, function, name)


def test_a_hand_edit_is_detected(db):
    db.execute("SELECT train_purchase_model('test10_linear', 'linear', true, '{}', 0.2, 42, 5000)")
    db.execute("SELECT ml_deploy_compiled('test10_linear', 'test10_linear_sql')")
    db.execute("CREATE OR REPLACE FUNCTION test10_linear_sql(age float8, income float8, credit_score float8)"
               " RETURNS float8 LANGUAGE sql IMMUTABLE RETURN 42")
    current, reason = db.execute("SELECT is_current, reason FROM ml_compiled_status()"
                                 " WHERE function_name = 'test10_linear_sql'").fetchone()
    assert current is False and "changed" in reason
    db.execute("DROP FUNCTION test10_linear_sql(float8, float8, float8)")
    assert db.execute("SELECT ml_compiled_is_current('test10_linear_sql')").fetchone()[0] is False
    assert db.execute("SELECT ml_compiled_is_current('no_such_function')").fetchone()[0] is False


def test_refusals_are_clear(db):
    db.execute("SELECT train_purchase_model('test10_mlp', 'mlp', true, '{\"max_iter\": 20}', 0.2, 42, 2000)")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as error:
        db.execute("SELECT ml_deploy_compiled('test10_mlp', 'test10_mlp_sql')")
    assert "cannot compile model 'test10_mlp'" in error.value.diag.message_primary
    assert "MLPRegressor" in error.value.diag.message_primary and "ml_predict" in error.value.diag.message_hint
    assert db.execute("SELECT count(*) FROM pg_proc WHERE proname = 'test10_mlp_sql'").fetchone()[0] == 0

    db.execute("SELECT train_purchase_model('test10_linear', 'linear', true, '{}', 0.2, 42, 2000)")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT ml_compile_to_sql('test10_linear', 'Robert''); DROP TABLE x; --')")
    with pytest.raises(psycopg.errors.DuplicateFunction, match="not created by ml_deploy_compiled"):
        db.execute("SELECT ml_deploy_compiled('test10_linear', 'predict_purchase')")
    with pytest.raises(psycopg.errors.NoDataFound):
        db.execute("SELECT ml_compile_to_sql('test10_no_such_model', 'test10_x_sql')")


def test_file_applies_twice(conn, apply_sql):
    apply_sql("02_sample_data.sql", "04_training.sql", "10_compiled_models.sql", "10_compiled_models.sql")
    assert conn.execute("SELECT to_regprocedure('ml_compiled_is_current(text)') IS NOT NULL").fetchone()[0]


def test_tree_constants_are_stored_as_float8_not_numeric(db):
    """'0.5'::float8 is a float8 constant when the function is created; a bare 0.5 is NUMERIC plus a cast
    that every planning of an inlined call folds again (and stores twice the parse tree)."""
    db.execute("SELECT train_purchase_model('test10_decision_tree', 'decision_tree', true, '{\"max_depth\": 4}', 0.2, 42, 5000)")
    sql = db.execute("SELECT ml_compile_to_sql('test10_decision_tree', 'test10_decision_tree_sql')").fetchone()[0]
    assert "'::float8 THEN" in sql and not re.search(r"(<=|<) -?\d", sql), sql[:400]
    db.execute("SELECT ml_deploy_compiled('test10_decision_tree', 'test10_decision_tree_sql')")
    (body,) = db.execute("SELECT prosqlbody::text FROM pg_proc WHERE proname = 'test10_decision_tree_sql'").fetchone()
    assert ":consttype 701 " in body and ":consttype 1700 " not in body      # float8 (701), never numeric (1700)


def test_the_bench_takes_a_statement_apart(db):
    from pgmlkit.bench.compiled import statement_costs
    db.execute("SELECT train_purchase_model('test10_forest', 'random_forest', true, '{\"n_estimators\": 5, \"max_depth\": 5}', 0.2, 42, 5000)")
    db.execute("SELECT ml_deploy_compiled('test10_forest', 'test10_forest_sql')")
    db.execute("SET jit = off")
    costs = statement_costs(db, "test10_forest_sql", 500, with_default_jit=True)
    assert costs["planning_ms"] > 0 and costs["executor_start_ms"] > 0 and costs["marginal_us_per_row"] > 0
    assert costs["stored_body_bytes"] > 1000 and costs["rows_measured"] == 500
    assert set(costs["default_jit"]) == {"planning_ms", "execution_ms", "jit_ms"}
    assert db.execute("SHOW jit").fetchone()[0] == "off"          # the session's setting is put back
