"""sql/04_training.sql: the talk's train_model() and ml_models, the registry, train_purchase_model(), ml_load_model().

Every test works on model names starting with `test04_` and deletes them afterwards, or runs inside a
transaction that is rolled back, so the registry of the database is left as it was found.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import threading
from importlib import metadata

import psycopg
import pytest

import pgmlkit
from pgmlkit import exercises

N_ROWS = 20000   # enough for the coefficients to be recovered within ~1 %, quick to train
ALGORITHMS = {"linear": "LinearRegression", "decision_tree": "DecisionTreeRegressor",
              "random_forest": "RandomForestRegressor", "gradient_boosting": "HistGradientBoostingRegressor",
              "mlp": "Pipeline"}


def forget(conn, pattern="test04_%"):
    """Delete test models from the registry (allowed: rows are immutable, not undeletable)."""
    conn.execute("DELETE FROM ml_models WHERE model_name LIKE %s", [pattern])
    conn.execute("DELETE FROM ml_model_deployments WHERE model_name LIKE %s", [pattern])
    conn.execute("DELETE FROM ml_model_versions WHERE model_name LIKE %s", [pattern])


@pytest.fixture(scope="module")
def kit():
    """sql/02 and sql/04 applied on a fresh customer_data with N_ROWS seeded rows."""
    with pgmlkit.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS customer_data CASCADE")   # no triggers of later notebooks on it
        pgmlkit.run_sql_file("02_sample_data.sql", conn)
        pgmlkit.run_sql_file("04_training.sql", conn)
        conn.execute("SELECT load_sample_customers(%s, 42)", [N_ROWS])
        forget(conn)
    yield
    with pgmlkit.connect() as conn:
        forget(conn)


@pytest.fixture(scope="module")
def session(kit):
    """One session for the module: PL/Python imports scikit-learn once per session (~1 s), not per test.
    Tests about the per-session model cache open their own, fresh sessions."""
    with pgmlkit.connect() as conn:
        yield conn


@pytest.fixture()
def db(session):
    yield session
    forget(session)


def one(conn, query, params=None):
    return conn.execute(query, params).fetchone()


def versions(conn, name):
    return conn.execute("SELECT version, source FROM ml_model_versions WHERE model_name = %s ORDER BY version",
                        [name]).fetchall()


def deployed(conn, name):
    return conn.execute("SELECT version FROM ml_models WHERE model_name = %s", [name]).fetchall()


def deployments(conn, name):
    return [v for (v,) in conn.execute(
        "SELECT version FROM ml_model_deployments WHERE model_name = %s ORDER BY deployment_id", [name])]


def truth(conn):
    return dict(conn.execute("SELECT term, value FROM sample_data_truth()").fetchall())


def tamper(conn, name, version, new_bytes):
    """What a superuser could do: switch the immutability trigger off, change the bytes, switch it on.
    In one transaction, so no other session ever sees the registry unprotected."""
    with conn.transaction():
        conn.execute("ALTER TABLE ml_model_versions DISABLE TRIGGER ml_model_versions_immutable")
        conn.execute("UPDATE ml_model_versions SET model_data = %s WHERE model_name = %s AND version = %s",
                     [new_bytes, name, version])
        conn.execute("ALTER TABLE ml_model_versions ENABLE TRIGGER ml_model_versions_immutable")


# --- the files -------------------------------------------------------------------------------------

def test_applying_both_files_twice_succeeds(db, apply_sql):
    apply_sql("02_sample_data.sql", "04_training.sql", "02_sample_data.sql", "04_training.sql")
    triggers = {name for (name,) in db.execute(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN"
        " ('ml_models'::regclass, 'ml_model_versions'::regclass, 'ml_model_deployments'::regclass)")}
    assert triggers >= {"ml_models_versioned", "ml_model_versions_immutable", "ml_model_deployments_immutable"}
    assert one(db, "SELECT count(*) FROM customer_data")[0] == N_ROWS + 3


# --- the talk's train_model() ----------------------------------------------------------------------

def test_train_model_as_on_the_slide_fails_on_pandas_3(db):
    with pytest.raises(psycopg.errors.ExternalRoutineException) as raised:
        with db.transaction():                   # rolled back: the fixed version stays in place
            db.execute(pgmlkit.sql_block("04_training.sql", "train_model_as_on_the_slide"))
            db.execute("SELECT train_model()")
    assert raised.value.diag.message_primary == "ValueError: DataFrame constructor not properly called!"
    assert "list(data)" in pgmlkit.sql_block("04_training.sql", "train_model")


def test_fixed_train_model_skips_customers_without_a_purchase_amount(db):
    with db.transaction(force_rollback=True):    # the talk's INSERT of notebook 06: no purchase yet
        db.execute("INSERT INTO customer_data (age, income, credit_score) VALUES (30, 60000, 720)")
        model = pickle.loads(one(db, "SELECT train_model()")[0])
    assert type(model).__name__ == "LinearRegression"


def test_fixed_train_model_returns_a_pickled_linear_regression_close_to_the_truth(db):
    model = pickle.loads(one(db, "SELECT train_model()")[0])
    t = truth(db)
    assert type(model).__name__ == "LinearRegression"
    assert list(model.feature_names_in_) == ["age", "income", "credit_score"]
    for feature, learned in zip(model.feature_names_in_, model.coef_):
        assert learned == pytest.approx(t[feature], rel=0.05)


# --- the registry behind the talk's statements -----------------------------------------------------

def test_the_talks_insert_twice_gives_two_versions_and_one_row(db):
    for _ in range(2):
        db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_talk', train_model())")
    assert versions(db, "test04_talk") == [(1, "direct write to ml_models"), (2, "direct write to ml_models")]
    assert deployed(db, "test04_talk") == [(2,)]
    assert deployments(db, "test04_talk") == [1, 2]
    stored, digest = one(db, "SELECT model_data, model_sha256 FROM ml_model_versions"
                             " WHERE model_name = 'test04_talk' AND version = 2")
    assert digest == hashlib.sha256(stored).hexdigest()
    assert one(db, "SELECT model_data FROM ml_models WHERE model_name = 'test04_talk'")[0] == stored


def test_rows_written_before_the_registry_become_versions(db):
    """The notebook's story: the talk's table, its INSERT run twice, then sql/04 — nothing is lost.
    Rebuilt inside a transaction that is rolled back, so the real registry is untouched."""
    with db.transaction(force_rollback=True):
        db.execute("DROP TABLE ml_model_deployments, ml_model_versions, ml_models CASCADE")
        db.execute(pgmlkit.sql_block("04_training.sql", "ml_models"))
        for _ in range(2):
            db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_old', train_model())")
        db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_old', '\\x01')")
        assert one(db, "SELECT count(*) FROM ml_models")[0] == 3      # the talk's table: duplicates
        pgmlkit.run_sql_file("04_training.sql", db)
        assert versions(db, "test04_old") == [(v, "written before the registry") for v in (1, 2, 3)]
        assert db.execute("SELECT model_name, version, model_data FROM ml_models").fetchall() == \
            [("test04_old", 3, b"\x01")]
        assert deployments(db, "test04_old") == [3]                      # the one in use
        db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_old', train_model())")
        assert deployed(db, "test04_old") == [(4,)] and deployments(db, "test04_old") == [3, 4]


def test_updating_model_data_registers_a_new_version_and_logs_the_deployment(db):
    db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_update', train_model())")
    with db.transaction(force_rollback=True):      # new customers arrive, then the talk's retraining UPDATE
        db.execute("INSERT INTO customer_data (age, income, credit_score, purchase_amount)"
                   " SELECT 30, 60000, 720, 2500 FROM generate_series(1, 500)")
        result = db.execute("UPDATE ml_models SET model_data = train_model() WHERE model_name = 'test04_update'")
        assert result.rowcount == 1
        assert versions(db, "test04_update") == [(1, "direct write to ml_models"), (2, "direct write to ml_models")]
        assert deployed(db, "test04_update") == [(2,)]
        assert deployments(db, "test04_update") == [1, 2]


def test_updating_with_identical_bytes_is_not_a_new_version(db):
    db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_same', train_model())")
    db.execute("UPDATE ml_models SET model_data = train_model() WHERE model_name = 'test04_same'")   # same data
    db.execute("UPDATE ml_models SET deployed_at = deployed_at WHERE model_name = 'test04_same'")
    assert versions(db, "test04_same") == [(1, "direct write to ml_models")]
    assert deployments(db, "test04_same") == [1]


def test_updating_only_the_version_deploys_that_registered_version(db):
    db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_roll', '\\x01')")
    db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_roll', '\\x02')")
    db.execute("UPDATE ml_models SET version = 1 WHERE model_name = 'test04_roll'")
    assert one(db, "SELECT version, model_data FROM ml_models WHERE model_name = 'test04_roll'") == (1, b"\x01")
    assert len(versions(db, "test04_roll")) == 2            # a rollback registers nothing
    assert deployments(db, "test04_roll") == [1, 2, 1]
    with pytest.raises(psycopg.errors.RaiseException) as raised:
        db.execute("UPDATE ml_models SET version = 7 WHERE model_name = 'test04_roll'")
    assert raised.value.diag.message_primary == "model test04_roll has no version 7"
    assert "ml_model_versions" in raised.value.diag.message_hint


def test_deploying_a_version_with_insert_select_logs_it_without_registering(db):
    db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_dep', '\\x01')")
    db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_dep', '\\x02')")
    db.execute("INSERT INTO ml_models (model_name, model_data, version)"
               " SELECT model_name, model_data, version FROM ml_model_versions WHERE model_name = 'test04_dep' AND version = 1")
    assert deployed(db, "test04_dep") == [(1,)]
    assert len(versions(db, "test04_dep")) == 2
    assert deployments(db, "test04_dep") == [1, 2, 1]


def test_ml_models_needs_a_name_and_bytes(db):
    with pytest.raises(psycopg.errors.RaiseException, match=r"needs both model_name and model_data \(got name test04_x, NULL bytes\)"):
        db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_x', NULL)")
    with pytest.raises(psycopg.errors.RaiseException, match="has no bytes to register"):
        db.execute("SELECT register_model_version('test04_x', NULL, 'test')")


def test_versions_and_deployments_are_immutable(db):
    db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_imm', '\\x01')")
    with pytest.raises(psycopg.errors.RaiseException) as raised:
        db.execute("UPDATE ml_model_versions SET metrics = '{\"r2\": 1}' WHERE model_name = 'test04_imm'")
    assert raised.value.diag.message_primary == "ml_model_versions rows are immutable (model test04_imm, version 1)"
    with pytest.raises(psycopg.errors.RaiseException, match="ml_model_deployments rows are immutable"):
        db.execute("UPDATE ml_model_deployments SET version = 1 WHERE model_name = 'test04_imm'")
    assert one(db, "SELECT metrics FROM ml_model_versions WHERE model_name = 'test04_imm'")[0] is None


def test_two_concurrent_registrations_never_collide(kit):
    """Two real sessions register the same new model at the same time; each holds its transaction
    open after registering, so without the advisory lock both would compute version 1."""
    start = threading.Barrier(2)
    results, errors = [], []

    def register(payload: bytes):
        try:
            with pgmlkit.connect(autocommit=False) as conn:
                start.wait()
                version = one(conn, "SELECT register_model_version('test04_race', %s, 'test')", [payload])[0]
                conn.execute("SELECT pg_sleep(0.3)")      # hold the transaction open
                conn.commit()
                results.append(version)
        except Exception as error:  # collected: an exception in a thread would otherwise be lost
            errors.append(error)

    threads = [threading.Thread(target=register, args=(bytes([i]),)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(results) == [1, 2]


def test_two_concurrent_talk_inserts_of_a_new_name_both_succeed(kit):
    start = threading.Barrier(2)
    errors = []

    def insert(payload: bytes):
        try:
            with pgmlkit.connect(autocommit=False) as conn:
                start.wait()
                conn.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_race_insert', %s)",
                             [payload])
                conn.execute("SELECT pg_sleep(0.3)")
                conn.commit()
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=insert, args=(bytes([i]),)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    with pgmlkit.connect() as conn:
        assert errors == []
        assert [v for v, _ in versions(conn, "test04_race_insert")] == [1, 2]
        assert deployed(conn, "test04_race_insert") == [(2,)]
        forget(conn)


# --- train_purchase_model() ------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_train_purchase_model_registers_everything_an_auditor_reads(db, algorithm):
    version = one(db, "SELECT train_purchase_model('test04_algo', %s, promote => false, max_rows => 2000)",
                  [algorithm])[0]
    row = one(db, "SELECT algorithm, features, target, training_rows, training_range, metrics, parameters,"
                  " library_versions, trained_by = current_user, source, model_sha256, model_data"
                  " FROM ml_model_versions WHERE model_name = 'test04_algo' AND version = %s", [version])
    algo, features, target, training_rows, training_range, metrics, parameters, libraries, by_me, source, digest, data = row
    assert algo == ALGORITHMS[algorithm]
    assert features == ["age", "income", "credit_score"] and target == "purchase_amount"
    assert training_rows == 1600 and metrics["holdout_rows"] == 400
    assert set(training_range) == set(features)
    assert training_range["age"][0] >= 18 and training_range["age"][1] <= 75
    assert metrics["r2"] > 0.8 and 55 < metrics["mae"] < 150 and metrics["fit_seconds"] >= 0
    assert parameters["split"] == {"holdout_fraction": 0.2, "seed": 42, "max_rows": 2000, "last_id": 2000}
    assert parameters["hyperparameters"]
    assert ("coefficients" in parameters) == (algorithm == "linear")
    assert libraries["scikit-learn"] == metadata.version("scikit-learn")
    assert set(libraries) >= {"python", "numpy", "pandas", "scipy", "joblib"}
    assert by_me and source == "train_purchase_model"
    assert digest == hashlib.sha256(data).hexdigest()
    assert type(pickle.loads(data)).__name__ == ALGORITHMS[algorithm]
    assert deployed(db, "test04_algo") == []                 # promote => false


def test_params_reach_the_estimator(db):
    version = one(db, """SELECT train_purchase_model('test04_params', 'decision_tree', false, '{"max_depth": 3}', max_rows => 2000)""")[0]
    model = pickle.loads(one(db, "SELECT model_data FROM ml_model_versions WHERE model_name = 'test04_params'"
                                 " AND version = %s", [version])[0])
    assert model.get_depth() == 3


def test_the_linear_model_recovers_the_generators_formula(db):
    version = one(db, "SELECT train_purchase_model('test04_truth')")[0]
    parameters, metrics = one(db, "SELECT parameters, metrics FROM ml_model_versions"
                                  " WHERE model_name = 'test04_truth' AND version = %s", [version])
    t = truth(db)
    assert parameters["intercept"] == pytest.approx(t["intercept"], rel=0.05)
    for feature in ("age", "income", "credit_score"):
        assert parameters["coefficients"][feature] == pytest.approx(t[feature], rel=0.03)
    # With normal noise of sd 80, even the true formula has an MAE of 80·√(2/π) ≈ 63.8.
    assert metrics["mae"] == pytest.approx(t["noise_stddev"] * (2 / 3.141592653589793) ** 0.5, rel=0.1)
    assert deployed(db, "test04_truth") == [(version,)]      # promote defaults to true
    assert deployments(db, "test04_truth") == [version]


def test_too_little_data_is_a_clear_error_with_a_hint(db):
    with pytest.raises(psycopg.errors.DataException) as raised:
        with db.transaction():
            db.execute("DELETE FROM customer_data WHERE id > 5")
            db.execute("SELECT train_purchase_model('test04_small')")
    assert raised.value.diag.message_primary == (
        "plpy.Error: customer_data has 5 complete rows; at least 10 are needed to train and evaluate")
    assert raised.value.diag.message_hint == "Load sample data first: SELECT load_sample_customers();"


@pytest.mark.parametrize("call, message", [
    ("train_purchase_model('test04_bad', 'svm')", "unknown algorithm 'svm'"),
    ("train_purchase_model(NULL)", "model_name must not be NULL or empty"),
    ("train_purchase_model('test04_bad', seed => NULL)", "promote and seed must not be NULL"),
    ("train_purchase_model('test04_bad', holdout_fraction => 1)", "holdout_fraction must be between 0 and 1"),
    ("train_purchase_model('test04_bad', max_rows => 3)", "max_rows must be NULL (all rows) or at least 10"),
    ("""train_purchase_model('test04_bad', params => '{"depth": 3}')""", "params do not fit algorithm 'linear'"),
    ("""train_purchase_model('test04_bad', 'decision_tree', params => '{"max_depth": -1}')""",
     "training 'decision_tree' failed"),
    ("train_purchase_model('test04_bad', params => '[1]')", "params must be a JSON object"),
])
def test_bad_arguments_are_refused_before_anything_is_registered(db, call, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as raised:
        db.execute(f"SELECT {call}")
    assert message in raised.value.diag.message_primary
    assert raised.value.diag.message_hint
    assert versions(db, "test04_bad") == []


def test_wrong_argument_types_are_sql_errors(db):
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        db.execute("SELECT train_purchase_model('test04_bad', 'linear', 'maybe')")


# --- ml_load_model() -------------------------------------------------------------------------------

def load(conn, name):
    return one(conn, "SELECT ml_load_model(%s)", [name])[0]


def cached(conn):
    return conn.execute("SELECT model_name, version, model_class FROM ml_cached_models()"
                        " WHERE model_name LIKE 'test04_%'").fetchall()


def test_ml_load_model_returns_the_deployed_version_and_caches_it(db):
    db.execute("SELECT train_purchase_model('test04_load', max_rows => 1000)")
    second = one(db, "SELECT train_purchase_model('test04_load', 'decision_tree', max_rows => 1000)")[0]
    with pgmlkit.connect() as first_session:
        assert cached(first_session) == []
        assert load(first_session, "test04_load") == second
        assert cached(first_session) == [("test04_load", second, "DecisionTreeRegressor")]
        # Cached: the bytes are not read again. Proof: corrupt them; this session still answers...
        tamper(db, "test04_load", second, b"not a pickle")
        assert load(first_session, "test04_load") == second
    # ...while a new session, with an empty cache, reads them and refuses.
    with pgmlkit.connect() as other, pytest.raises(psycopg.errors.DataCorrupted) as raised:
        load(other, "test04_load")
    assert raised.value.diag.message_primary == (
        f"plpy.Error: model 'test04_load' version {second}: bytes do not match their sha256 digest; refusing to unpickle")
    assert "known-good version" in raised.value.diag.message_hint


def test_a_new_deployment_replaces_the_cached_version(db):
    first = one(db, "SELECT train_purchase_model('test04_switch', max_rows => 1000)")[0]
    with pgmlkit.connect() as reader:
        assert load(reader, "test04_switch") == first
        second = one(db, "SELECT train_purchase_model('test04_switch', 'decision_tree', max_rows => 1000)")[0]
        assert load(reader, "test04_switch") == second          # the next call sees the new deployment
        assert cached(reader) == [("test04_switch", second, "DecisionTreeRegressor")]   # one version per name


def test_a_registry_rebuilt_under_the_same_version_is_not_served_from_the_cache(db):
    version = one(db, "SELECT train_purchase_model('test04_rebuilt', max_rows => 1000)")[0]
    with pgmlkit.connect() as reader:
        load(reader, "test04_rebuilt")
        forget(db, "test04_rebuilt")
        assert one(db, "SELECT train_purchase_model('test04_rebuilt', 'decision_tree', max_rows => 1000)")[0] == version
        assert load(reader, "test04_rebuilt") == version
        assert cached(reader) == [("test04_rebuilt", version, "DecisionTreeRegressor")]


def test_ml_load_model_refuses_a_model_from_another_scikit_learn(db):
    data = one(db, "SELECT train_model()")[0]
    versions_json = json.dumps({**json.loads(one(db, "SELECT ml_library_versions()::text")[0]),
                                "scikit-learn": "0.24.2"})
    db.execute("INSERT INTO ml_model_versions (model_name, version, model_data, model_sha256, library_versions, source)"
               " VALUES ('test04_oldsk', 1, %s, encode(sha256(%s), 'hex'), %s, 'restored from another server')",
               [data, data, versions_json])
    # A superuser adopts the restored row (signs it), so the check after the signature is the one that refuses.
    db.execute("SELECT ml_private.sign_model_version('test04_oldsk', 1)")
    db.execute("INSERT INTO ml_models (model_name, model_data, version)"
               " SELECT model_name, model_data, version FROM ml_model_versions WHERE model_name = 'test04_oldsk'")
    assert deployed(db, "test04_oldsk") == [(1,)] and len(versions(db, "test04_oldsk")) == 1
    with pgmlkit.connect() as reader:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as raised:
            load(reader, "test04_oldsk")
        assert cached(reader) == []
    running = metadata.version("scikit-learn")
    assert raised.value.diag.message_primary == (
        f"plpy.Error: model 'test04_oldsk' version 1 was trained with scikit-learn 0.24.2, this server runs {running}")
    assert "retrain" in raised.value.diag.message_hint


@pytest.mark.parametrize("name, error, message", [
    ("test04_missing", psycopg.errors.NoDataFound, "no model named 'test04_missing' is deployed"),
    (None, psycopg.errors.NullValueNotAllowed, "ml_load_model: the model name is NULL"),
])
def test_ml_load_model_missing_or_null_name(db, name, error, message):
    with pytest.raises(error) as raised:
        load(db, name)
    assert raised.value.diag.message_primary == f"plpy.Error: {message}"
    assert raised.value.diag.message_hint


def test_ml_load_model_when_the_deployed_version_is_not_in_the_registry(db):
    db.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('test04_orphan', '\\x01')")
    db.execute("DELETE FROM ml_model_deployments WHERE model_name = 'test04_orphan'")
    db.execute("DELETE FROM ml_model_versions WHERE model_name = 'test04_orphan'")
    with pytest.raises(psycopg.errors.NoDataFound, match="the registry has no such version"):
        load(db, "test04_orphan")


# --- the notebook's exercise checks ----------------------------------------------------------------

def verdict(capsys, exercise_id, answer) -> str:
    exercises.check(exercise_id, answer)
    return capsys.readouterr().out


def test_exercise_checks_reject_wrong_answers(db, capsys):
    assert verdict(capsys, "04.1", 10**6).startswith("❌ Not yet")
    assert verdict(capsys, "04.1", "3").startswith("❌ Not yet")
    assert verdict(capsys, "04.2", "SELECT 10**6").startswith("❌ Not yet")
    assert verdict(capsys, "04.3", "SELECT 1").startswith("❌ Not yet")
