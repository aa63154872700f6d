"""sql/08_tradeoffs.sql: the floors, the scikit-learn yardstick, backend memory, training cost,
the explanations and the audit view that notebook 08 and `make bench` rely on.

Models are named `test08_*` and removed afterwards, so the registry is left as it was found.
"""
from __future__ import annotations

import hashlib
import math
import pickle

import numpy as np
import psycopg
import pytest

import pgmlkit

N_ROWS = 3000
PROBES = [(35, 50000.0, 700), (62, 30000.0, 810), (19, 134000.0, 420), (50, 90000.0, 720)]


def forget(conn, pattern="test08_%"):
    conn.execute("DELETE FROM ml_models WHERE model_name LIKE %s", [pattern])
    conn.execute("DELETE FROM ml_model_deployments WHERE model_name LIKE %s", [pattern])
    conn.execute("DELETE FROM ml_model_versions WHERE model_name LIKE %s", [pattern])


@pytest.fixture(scope="module")
def db():
    """sql/02, 04, 05 and 08 on N_ROWS seeded rows, with a linear model, a tree and a small forest."""
    with pgmlkit.connect() as conn:
        for name in ("02_sample_data.sql", "04_training.sql", "05_prediction.sql", "08_tradeoffs.sql"):
            pgmlkit.run_sql_file(name, conn)
        if conn.execute("SELECT to_regproc('use_prediction_trigger') IS NOT NULL").fetchone()[0]:
            conn.execute("SELECT use_prediction_trigger('none')")   # loading rows must not run a trigger
        conn.execute("SELECT load_sample_customers(%s, 42)", [N_ROWS])
        forget(conn)
        for name, algorithm, params in (("test08_linear", "linear", "{}"),
                                        ("test08_tree", "decision_tree", '{"max_depth": 5}'),
                                        ("test08_forest", "random_forest", '{"n_estimators": 5}')):
            conn.execute("SELECT train_purchase_model(%s, %s, true, %s)", [name, algorithm, params])
        yield conn
        forget(conn)


def sklearn_model(conn, name):
    data = conn.execute("SELECT v.model_data FROM ml_models m JOIN ml_model_versions v USING (model_name, version)"
                        " WHERE m.model_name = %s", [name]).fetchone()[0]
    return pickle.loads(data)


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()[0]


# ---- floors -----------------------------------------------------------------------------------------
def test_call_floor_returns_its_income_argument(db):
    assert one(db, "SELECT plpython_call_floor(35, 50000.5, 700)") == 50000.5
    assert one(db, "SELECT plpython_call_floor(35, NULL, 700)") is None


def test_array_floor_returns_the_income_array(db):
    assert one(db, "SELECT plpython_array_floor(ARRAY[1, 2], ARRAY[3.5, 4.5]::float8[], ARRAY[5, 6])") == [3.5, 4.5]


def test_import_seconds_is_zero_the_second_time_and_fails_for_unknown_modules(db):
    first = one(db, "SELECT plpython_import_seconds('json')")
    assert 0 <= first < 5
    assert one(db, "SELECT plpython_import_seconds('json')") < 0.001          # already imported: a dict lookup
    with pytest.raises(psycopg.Error, match="No module named 'no_such_module_08'"):
        db.execute("SELECT plpython_import_seconds('no_such_module_08')")


# ---- the scikit-learn yardstick -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["test08_linear", "test08_tree", "test08_forest"])
def test_ml_predict_sklearn_is_the_models_own_predict(db, name):
    model = sklearn_model(db, name)
    expected = model.predict(np.array(PROBES, dtype=np.float64))
    got = [one(db, "SELECT ml_predict_sklearn(%s, ARRAY[%s, %s, %s]::float8[])", [name, *p]) for p in PROBES]
    assert got == pytest.approx(expected.tolist(), rel=1e-12)
    batch = one(db, "SELECT ml_predict_sklearn_batch(%s, %s::float8[])", [name, [list(map(float, p)) for p in PROBES]])
    assert batch == pytest.approx(expected.tolist(), rel=1e-12)


def test_ml_predict_sklearn_nulls_and_errors(db):
    assert one(db, "SELECT ml_predict_sklearn('test08_linear', NULL)") is None            # STRICT
    assert one(db, "SELECT ml_predict_sklearn('test08_linear', ARRAY[35, NULL, 700]::float8[])") is None
    assert one(db, "SELECT ml_predict_sklearn_batch('test08_linear', '{}'::float8[])") == []
    with pytest.raises(psycopg.Error, match="no model named 'test08_missing' is deployed"):
        db.execute("SELECT ml_predict_sklearn('test08_missing', ARRAY[1, 2, 3]::float8[])")
    with pytest.raises(psycopg.Error, match="wants a 2-D array") as error:
        db.execute("SELECT ml_predict_sklearn_batch('test08_linear', ARRAY[1, 2, 3]::float8[])")
    assert "array_agg(ARRAY[age, income, credit_score]" in error.value.diag.message_hint


def test_ml_predict_sklearn_uses_a_newly_deployed_version_at_the_next_call(db):
    before = one(db, "SELECT ml_predict_sklearn('test08_linear', ARRAY[35, 50000, 700]::float8[])")
    with pgmlkit.connect() as other:                       # another session retrains on other data
        other.execute("SELECT train_purchase_model('test08_linear', 'linear', true, '{}', 0.2, 42, 100)")
        after_expected = sklearn_model(other, "test08_linear").predict([[35, 50000, 700]])[0]
    after = one(db, "SELECT ml_predict_sklearn('test08_linear', ARRAY[35, 50000, 700]::float8[])")
    assert after != before and after == pytest.approx(after_expected, rel=1e-12)


# ---- memory -------------------------------------------------------------------------------------
def test_backend_memory_reads_this_backend(db):
    pid, rss, anon, peak = db.execute("SELECT pid, rss_kb, rss_anon_kb, peak_rss_kb FROM backend_memory()").fetchone()
    assert pid == one(db, "SELECT pg_backend_pid()")
    assert 0 < anon < rss <= peak


def test_backend_memory_grows_when_a_model_is_loaded():
    with pgmlkit.connect() as fresh:
        before = one(fresh, "SELECT rss_anon_kb FROM backend_memory()")
        fresh.execute("SELECT ml_predict_sklearn('test08_forest', ARRAY[35, 50000, 700]::float8[])")
        after = one(fresh, "SELECT rss_anon_kb FROM backend_memory()")
    assert after - before > 10_000, "numpy + scikit-learn + a forest must take more than 10 MB"


# ---- training cost ------------------------------------------------------------------------------
def test_training_cost_measures_and_leaves_no_trace(db):
    versions_before = one(db, "SELECT count(*) FROM ml_model_versions")
    rows, fetch, fit, total, size, r2 = db.execute("SELECT * FROM training_cost('linear', 1000)").fetchone()
    assert rows == 800                                       # 20 % held out
    assert 0 < fetch < total and 0 <= fit < total
    assert size == one(db, "SELECT octet_length(v.model_data) FROM ml_models m JOIN ml_model_versions v"
                           " USING (model_name, version) WHERE m.model_name = 'test08_linear'")  # same class, same size
    assert 0.9 < r2 <= 1
    assert one(db, "SELECT count(*) FROM ml_model_versions") == versions_before
    assert one(db, "SELECT count(*) FROM ml_model_versions WHERE model_name = 'training_cost_probe'") == 0


def test_training_cost_refuses_impossible_sizes(db):
    with pytest.raises(psycopg.Error, match="n_rows >= 10"):
        db.execute("SELECT * FROM training_cost('linear', 5)")
    with pytest.raises(psycopg.Error, match=f"customer_data has {N_ROWS + 3} rows") as error:
        db.execute("SELECT * FROM training_cost('linear', %s)", [N_ROWS * 10])
    assert "load_sample_customers" in error.value.diag.message_hint
    with pytest.raises(psycopg.Error, match="unknown algorithm"):
        db.execute("SELECT * FROM training_cost('svm', 100)")


# ---- explanations -------------------------------------------------------------------------------
@pytest.mark.parametrize("age, income, credit", PROBES)
def test_linear_contributions_sum_to_the_prediction(db, age, income, credit):
    rows = db.execute("SELECT feature, value, weight, contribution FROM explain_purchase_prediction(%s, %s, %s, 'test08_linear')",
                      [age, income, credit]).fetchall()
    assert [r[0] for r in rows] == ["(intercept)", "age", "income", "credit_score"]
    model = sklearn_model(db, "test08_linear")
    assert rows[0][3] == pytest.approx(model.intercept_, rel=1e-12)
    for (feature, value, weight, contribution), coef, x in zip(rows[1:], model.coef_, (age, income, credit)):
        assert (value, weight) == (pytest.approx(x), pytest.approx(coef, rel=1e-12))
        assert contribution == pytest.approx(coef * x, rel=1e-12)
    assert sum(r[3] for r in rows) == pytest.approx(model.predict([[age, income, credit]])[0], rel=1e-12)


def test_linear_explanation_refuses_other_models(db):
    with pytest.raises(psycopg.Error, match="is a DecisionTreeRegressor: per-feature weights exist only for linear") as error:
        db.execute("SELECT * FROM explain_purchase_prediction(35, 50000, 700, 'test08_tree')")
    assert "explain_tree_prediction" in error.value.diag.message_hint
    with pytest.raises(psycopg.Error, match="no model named test08_missing is deployed"):
        db.execute("SELECT * FROM explain_purchase_prediction(35, 50000, 700, 'test08_missing')")


@pytest.mark.parametrize("probe", PROBES)
def test_tree_path_is_the_one_predict_follows(db, probe):
    rows = db.execute("SELECT step, node, feature, threshold, value, decision, node_mean, contribution"
                      " FROM explain_tree_prediction('test08_tree', %s::float8[])", [list(map(float, probe))]).fetchall()
    tree = sklearn_model(db, "test08_tree")
    expected_path = sorted(tree.decision_path([list(probe)]).indices)
    assert [r[1] for r in rows] == expected_path
    assert [r[0] for r in rows] == list(range(len(rows)))
    *splits, leaf = rows
    assert leaf[5] == "leaf: prediction" and leaf[2] is None
    assert leaf[6] == pytest.approx(tree.predict([list(probe)])[0], rel=1e-12)
    assert splits[0][6] + sum(r[7] for r in splits) == pytest.approx(leaf[6], rel=1e-9)
    names = ["age", "income", "credit_score"]
    for step, node, feature, threshold, value, decision, mean, contribution in splits:
        assert value == probe[names.index(feature)]
        went_left = np.float32(value) <= threshold          # sklearn compares float32 features
        assert decision == ("<= threshold" if went_left else "> threshold")


def test_tree_explanation_refuses_a_forest(db):
    with pytest.raises(psycopg.Error, match="is a RandomForestRegressor, not a single decision tree") as error:
        db.execute("SELECT * FROM explain_tree_prediction('test08_forest', ARRAY[35, 50000, 700]::float8[])")
    assert "ml_feature_importances" in error.value.diag.message_hint
    with pytest.raises(psycopg.Error, match="expects 3 features"):
        db.execute("SELECT * FROM explain_tree_prediction('test08_tree', ARRAY[35, 50000]::float8[])")


def test_feature_importances(db):
    rows = db.execute("SELECT feature, importance FROM ml_feature_importances('test08_forest')").fetchall()
    forest = sklearn_model(db, "test08_forest")
    assert sorted(r[0] for r in rows) == ["age", "credit_score", "income"]
    assert [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True)
    assert dict(rows) == pytest.approx(dict(zip(["age", "income", "credit_score"], forest.feature_importances_)))
    assert math.isclose(sum(r[1] for r in rows), 1.0)
    with pytest.raises(psycopg.Error, match="LinearRegression, which has no built-in importances"):
        db.execute("SELECT * FROM ml_feature_importances('test08_linear')")


# ---- audit --------------------------------------------------------------------------------------
def test_audit_view_answers_who_when_what_and_which_bytes(db):
    db.execute("SELECT train_purchase_model('test08_audit', 'linear', true)")
    db.execute("SELECT train_purchase_model('test08_audit', 'linear', false)")      # registered, not deployed
    rows = db.execute("SELECT version, in_use, trained_by, algorithm, training_rows, metrics ? 'r2',"
                      " library_versions->>'scikit-learn', model_sha256, model_bytes, jsonb_array_length(deployments)"
                      " FROM ml_model_audit WHERE model_name = 'test08_audit' ORDER BY version").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(1, True), (2, False)]
    user = one(db, "SELECT current_user")
    for version, in_use, trained_by, algorithm, training_rows, has_r2, sklearn, sha, size, deployments in rows:
        assert trained_by == user and algorithm == "LinearRegression" and has_r2
        assert training_rows == (N_ROWS + 3) - math.ceil(0.2 * (N_ROWS + 3))   # the rows not held out
        assert sklearn == one(db, "SELECT ml_library_versions()->>'scikit-learn'")
        data = one(db, "SELECT model_data FROM ml_model_versions WHERE model_name = 'test08_audit' AND version = %s",
                   [version])
        assert sha == hashlib.sha256(data).hexdigest() and size == len(data)
        assert deployments == (1 if in_use else 0)


# ---- notebook 08's exercise checks can say no -----------------------------------------------------
@pytest.fixture()
def deployed_linear(db):
    """The checks read the talk's model name, as the notebook does."""
    db.execute("SELECT train_purchase_model('purchase_predictor', 'linear', true, '{}', 0.2, 42, 2000)")
    return db


def test_exercise_checks_accept_the_solutions_and_reject_wrong_answers(deployed_linear, capsys):
    db = deployed_linear
    from pathlib import Path

    from pgmlkit import exercises

    def verdict(exercise_id, answer):
        exercises.check(exercise_id, answer)
        out = capsys.readouterr().out
        assert out.startswith(("✅ Correct", "❌ Not yet")), out
        return out.startswith("✅"), out

    solutions = Path(pgmlkit.KIT_ROOT) / "notebooks" / "solutions"
    for exercise_id in ("08.1", "08.2", "08.3"):
        scope = {}
        exec((solutions / f"{exercise_id.replace('.', '_')}.py").read_text(), scope)
        ok, out = verdict(exercise_id, scope["answer"])
        assert ok, out
    wrong = {
        "08.1": ["SELECT 'credit_score'",                                       # does not use the function
                 "SELECT feature FROM explain_purchase_prediction(62, 30000, 810) ORDER BY contribution LIMIT 1",
                 "SELECT feature FROM explain_purchase_prediction(62, 30000, 810)"
                 " WHERE feature <> '(intercept)' ORDER BY abs(contribution) LIMIT 1"],
        "08.2": ["SELECT trained_by, training_rows, library_versions->>'scikit-learn', (metrics->>'r2')::float8"
                 " FROM ml_model_audit WHERE model_name = 'purchase_predictor'",     # every version, not the one in use
                 "SELECT trained_by, training_rows, library_versions->'numpy', (metrics->>'r2')::float8"
                 " FROM ml_model_audit WHERE model_name = 'purchase_predictor' AND in_use"],
        "08.3": ["SELECT predict_purchase_cached(35, 50000, 700)",                   # PL/Python is not allowed
                 "SELECT (parameters->>'intercept')::float8 FROM ml_model_versions"
                 " WHERE model_name = 'purchase_predictor' ORDER BY version DESC LIMIT 1"],
    }
    db.execute("SELECT train_purchase_model('purchase_predictor', 'linear', false, '{}', 0.2, 42, 500)")  # 2 versions
    messages = []
    for exercise_id, answers in wrong.items():
        for answer in answers:
            ok, out = verdict(exercise_id, answer)
            assert not ok, f"{exercise_id} accepted {answer!r}: {out}"
            messages.append(out)
    out = "".join(messages)
    assert "leave it out" in out and "filter on in_use" in out and "no PL/Python function" in out
