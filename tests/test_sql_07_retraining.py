"""sql/07 — retraining: history, promote/rollback, every session picking up a new version, the drift
check, retrain_if_drifted's decisions, and the pg_cron schedule. Real database, no mocks."""
from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import errors

import pgmlkit

MODEL = "purchase_predictor"
JOB = "retrain-purchase-predictor"
SQL_FILES = ("02_sample_data.sql", "04_training.sql", "07_retraining.sql")


@pytest.fixture(scope="module", autouse=True)
def applied():
    with pgmlkit.connect() as conn:
        for name in SQL_FILES:
            pgmlkit.run_sql_file(name, conn)


def load_rows(conn, n_rows: int, seed: int = 42) -> None:
    """Sample rows without firing other notebooks' triggers on customer_data (notebook 06's
    prediction trigger would score every row): test data, not events."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("SELECT load_sample_customers(%s, %s)", [n_rows, seed])


def add_rows(conn, n_rows: int, income_shift: float = 0.0, cents_every: int | None = None) -> None:
    """n_rows new labelled rows: the features and noise of the first n_rows generated rows, with
    income_shift added to the income coefficient; every cents_every-th amount recorded in cents."""
    multiplier = f"CASE WHEN id %% {int(cents_every)} = 0 THEN 100 ELSE 1 END" if cents_every else "1"
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "INSERT INTO customer_data (age, income, credit_score, purchase_amount)"
            f" SELECT age, income, credit_score, round(purchase_amount + %s::numeric * income, 2) * {multiplier}"
            " FROM customer_data WHERE id BETWEEN 4 AND %s ORDER BY id",
            [income_shift, n_rows + 3])


def fresh(conn, n_rows: int = 20000, train_rows: int | None = None) -> int:
    """An empty registry, n_rows sample rows, and version 1 (linear) deployed."""
    conn.execute("TRUNCATE ml_retraining_log, ml_model_deployments, ml_models, ml_model_versions"
                 " RESTART IDENTITY CASCADE")
    load_rows(conn, n_rows)
    return conn.execute("SELECT train_purchase_model(max_rows => %s)", [train_rows]).fetchone()[0]


def deployed(conn) -> int:
    return conn.execute("SELECT version FROM ml_models WHERE model_name = %s", [MODEL]).fetchone()[0]


def deployments(conn) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT version FROM ml_model_deployments WHERE model_name = %s ORDER BY deployment_id", [MODEL])]


def retrain(conn, **kwargs) -> dict:
    args = ", ".join(f"{k} => %({k})s" for k in kwargs)
    cur = conn.execute(f"SELECT * FROM retrain_if_drifted({args})", kwargs)
    return dict(zip([c.name for c in cur.description], cur.fetchone()))


def drift(conn, **kwargs) -> dict:
    args = ", ".join(f"{k} => %({k})s" for k in kwargs)
    cur = conn.execute(f"SELECT * FROM purchase_model_drift({args})", kwargs)
    return dict(zip([c.name for c in cur.description], cur.fetchone()))


# --- applying the file ---------------------------------------------------------------------------

def test_sql_07_applies_twice_and_keeps_the_log(conn):
    fresh(conn, 2000)
    retrain(conn, threshold=1.5)
    pgmlkit.run_sql_file("07_retraining.sql", conn)
    pgmlkit.run_sql_file("07_retraining.sql", conn)
    assert conn.execute("SELECT count(*) FROM ml_retraining_log").fetchone()[0] == 1
    for signature in ("ml_promote(text,integer)", "ml_rollback(text)",
                      "purchase_model_drift(text,integer)",
                      "retrain_if_drifted(double precision,text,integer,integer,double precision,integer,double precision)"):
        assert conn.execute("SELECT to_regprocedure(%s) IS NOT NULL", [signature]).fetchone()[0], signature


def test_deployment_functions_are_not_executable_by_public(conn):
    for signature in ("ml_promote(text,integer)", "ml_rollback(text)",
                      "retrain_if_drifted(double precision,text,integer,integer,double precision,integer,double precision)"):
        public = conn.execute(
            "SELECT count(*) FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
            " WHERE p.oid = %s::regprocedure AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'",
            [signature]).fetchone()[0]
        assert public == 0, f"PUBLIC may execute {signature}"


# --- the talk's UPDATE and the history it keeps ----------------------------------------------------

def test_talk_update_registers_a_new_version_and_keeps_the_old(conn):
    fresh(conn, 2000)
    cur = conn.execute("UPDATE ml_models SET model_data = train_model() WHERE model_name = 'purchase_predictor'")
    assert cur.rowcount == 1
    assert deployed(conn) == 2
    assert deployments(conn) == [1, 2]
    history = conn.execute(
        "SELECT version, deployed, source, mae IS NOT NULL, times_deployed FROM ml_model_history"
        " WHERE model_name = %s ORDER BY version", [MODEL]).fetchall()
    assert history == [(1, False, "train_purchase_model", True, 1),
                       (2, True, "direct write to ml_models", False, 1)]
    # the bytes in ml_models are exactly the registered version 2
    assert conn.execute(
        "SELECT m.model_data = v.model_data FROM ml_models m JOIN ml_model_versions v USING (model_name, version)"
        " WHERE m.model_name = %s", [MODEL]).fetchone()[0]


# --- promote and rollback -------------------------------------------------------------------------

def test_promote_deploys_a_registered_version_and_logs_it(conn):
    fresh(conn, 2000)
    v2 = conn.execute("SELECT train_purchase_model(algorithm => 'decision_tree', promote => false)").fetchone()[0]
    assert (v2, deployed(conn)) == (2, 1)
    assert conn.execute("SELECT ml_promote(%s, 2)", [MODEL]).fetchone()[0] == 2
    assert deployed(conn) == 2
    assert deployments(conn) == [1, 2]
    assert conn.execute("SELECT version FROM ml_model_history WHERE model_name = %s AND deployed",
                        [MODEL]).fetchall() == [(2,)]


def test_promoting_the_deployed_version_changes_nothing(conn):
    fresh(conn, 2000)
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    assert conn.execute("SELECT ml_promote(%s, 1)", [MODEL]).fetchone()[0] == 1
    assert deployments(conn) == [1]
    assert any("already deployed" in n for n in notices)


@pytest.mark.parametrize("call, args, message, hint", [
    ("ml_promote(%s, %s)", [MODEL, 99], "model 'purchase_predictor' has no version 99", "Its versions are 1, 2;"),
    ("ml_promote(%s, %s)", ["no_such_model", 1], "no model named 'no_such_model' is registered",
     "Registered models: purchase_predictor."),
    ("ml_rollback(%s)", ["no_such_model"], "no model named 'no_such_model' is registered",
     "Registered models: purchase_predictor."),
])
def test_promote_and_rollback_name_what_exists(conn, call, args, message, hint):
    fresh(conn, 2000)
    conn.execute("SELECT train_purchase_model(promote => false)")
    with pytest.raises(errors.NoDataFound) as raised:
        conn.execute(f"SELECT {call}", args)
    assert raised.value.diag.message_primary == message
    assert raised.value.diag.message_hint.startswith(hint)
    assert deployed(conn) == 1


def test_promote_and_rollback_refuse_null(conn):
    fresh(conn, 2000)
    with pytest.raises(errors.NullValueNotAllowed, match="needs a model name and a version"):
        conn.execute("SELECT ml_promote(%s, NULL)", [MODEL])
    with pytest.raises(errors.NullValueNotAllowed, match="needs a model name"):
        conn.execute("SELECT ml_rollback(NULL)")


def test_rollback_undoes_the_last_deployment_like_cd_dash(conn):
    fresh(conn, 2000)
    conn.execute("SELECT train_purchase_model(algorithm => 'decision_tree')")            # v2 deployed
    conn.execute("SELECT train_purchase_model(algorithm => 'decision_tree', params => '{\"max_depth\": 3}')")
    assert deployments(conn) == [1, 2, 3]
    assert conn.execute("SELECT ml_rollback(%s)", [MODEL]).fetchone()[0] == 2
    assert deployed(conn) == 2
    assert conn.execute("SELECT ml_rollback(%s)", [MODEL]).fetchone()[0] == 3    # undoes the rollback
    conn.execute("SELECT ml_promote(%s, 1)", [MODEL])
    assert conn.execute("SELECT ml_rollback(%s)", [MODEL]).fetchone()[0] == 3
    assert deployments(conn) == [1, 2, 3, 2, 3, 1, 3]


def test_rollback_of_the_first_deployment_or_an_undeployed_model_fails_clearly(conn):
    fresh(conn, 2000)
    with pytest.raises(errors.NoDataFound) as raised:
        conn.execute("SELECT ml_rollback(%s)", [MODEL])
    assert raised.value.diag.message_primary == (
        "model 'purchase_predictor' has no earlier deployment to roll back to (version 1 is the first one deployed)")
    conn.execute("SELECT train_purchase_model('shelf_model', promote => false)")
    with pytest.raises(errors.NoDataFound, match="registered but not deployed"):
        conn.execute("SELECT ml_rollback('shelf_model')")


def test_a_failed_promote_inside_a_transaction_leaves_the_deployment_alone(conn):
    fresh(conn, 2000)
    conn.execute("SELECT train_purchase_model(algorithm => 'decision_tree', promote => false)")
    with pytest.raises(errors.NoDataFound):
        with conn.transaction():
            conn.execute("SELECT ml_promote(%s, 2)", [MODEL])
            conn.execute("SELECT ml_promote(%s, 42)", [MODEL])
    assert deployed(conn) == 1
    assert deployments(conn) == [1]


# --- every session picks up the new version at its next statement ---------------------------------

def has_cached_predictor(conn) -> bool:
    return conn.execute("SELECT to_regprocedure('predict_purchase_cached(integer,double precision,integer)')"
                        " IS NOT NULL").fetchone()[0]


def version_and_prediction(conn):
    """What session `conn` uses now: the deployed version as its cache sees it, and (with sql/05)
    the cached prediction function's answer for a fixed customer."""
    if has_cached_predictor(conn):
        return conn.execute("SELECT ml_load_model(%s), predict_purchase_cached(30, 60000, 720)",
                            [MODEL]).fetchone()
    return conn.execute("SELECT ml_load_model(%s), NULL", [MODEL]).fetchone()


@pytest.fixture()
def two_sessions(conn):
    fresh(conn, 5000)
    pgmlkit.run_sql_file("05_prediction.sql", conn) if (pgmlkit.SQL_DIR / "05_prediction.sql").exists() else None
    a, b = pgmlkit.connect(), pgmlkit.connect(autocommit=False)
    yield a, b
    a.close()
    b.close()


def test_next_statement_uses_a_version_committed_by_another_session(two_sessions):
    a, b = two_sessions
    before = version_and_prediction(a)
    assert before[0] == 1
    b.execute("SELECT train_purchase_model(algorithm => 'decision_tree')")
    b.commit()
    after = version_and_prediction(a)
    assert after[0] == 2
    if after[1] is not None:
        assert abs(after[1] - before[1]) > 1.0, "the decision tree should predict differently from the linear model"


def test_an_open_transaction_in_the_other_session_is_invisible_until_commit(two_sessions):
    a, b = two_sessions
    before = version_and_prediction(a)
    b.execute("SELECT train_purchase_model(algorithm => 'decision_tree')")     # B's transaction stays open
    assert version_and_prediction(a) == before
    b.commit()
    assert version_and_prediction(a)[0] == 2
    b.execute("SELECT ml_rollback(%s)", [MODEL])
    assert version_and_prediction(a)[0] == 2                                  # B has not committed the rollback
    b.rollback()
    assert version_and_prediction(a)[0] == 2
    b.execute("SELECT ml_rollback(%s)", [MODEL])
    b.commit()
    assert version_and_prediction(a) == before


def test_repeatable_read_keeps_its_snapshot_until_the_transaction_ends(two_sessions):
    a, b = two_sessions
    a.close()
    a = pgmlkit.connect(autocommit=False)
    try:
        a.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        assert version_and_prediction(a)[0] == 1
        b.execute("SELECT train_purchase_model(algorithm => 'decision_tree')")
        b.commit()
        assert version_and_prediction(a)[0] == 1     # same snapshot for the whole transaction
        a.commit()
        assert version_and_prediction(a)[0] == 2
    finally:
        a.close()


# --- the drift check -------------------------------------------------------------------------------

def test_drift_check_stays_quiet_on_new_rows_from_the_same_distribution(conn):
    fresh(conn, 22000, train_rows=20003)    # the newest 2,000 rows were never seen in training
    result = drift(conn)
    assert (result["model_name"], result["version"], result["rows_checked"]) == (MODEL, 1, 2000)
    assert 0.85 < result["drift_ratio"] < 1.15
    assert result["out_of_range_share"] < 0.01
    logged = retrain(conn, threshold=1.5)
    assert (logged["decision"], logged["new_version"]) == ("no drift", None)
    assert logged["reason"].startswith("recent MAE ")
    assert deployed(conn) == 1
    assert conn.execute("SELECT count(*) FROM ml_model_versions").fetchone()[0] == 1


def test_drift_check_fires_on_a_changed_formula_that_feature_statistics_miss(conn):
    fresh(conn, 20000)
    add_rows(conn, 5000, income_shift=0.010)     # the same customers, each buying 0.010 x income more
    result = drift(conn)
    assert result["drift_ratio"] > 5             # about 10: the error is ten times the holdout's
    assert result["out_of_range_share"] == 0     # no input is outside the training range
    assert result["recent_mae"] == pytest.approx(result["holdout_mae"] * result["drift_ratio"])


def test_drift_check_of_a_version_without_metrics_has_no_ratio(conn):
    fresh(conn, 2000)
    conn.execute("UPDATE ml_models SET model_data = train_model() WHERE model_name = 'purchase_predictor'")
    result = drift(conn, recent_rows=500)
    assert (result["version"], result["rows_checked"], result["holdout_mae"], result["drift_ratio"]) == (2, 500, None, None)
    assert 40 < result["recent_mae"] < 90          # the talk's model fits the formula (noise sd 80)


def test_drift_check_arguments_and_missing_model(conn):
    fresh(conn, 2000)
    with pytest.raises(errors.InvalidParameterValue, match="recent_rows must be 1 or more, got 0"):
        drift(conn, recent_rows=0)
    with pytest.raises(psycopg.Error, match="no model named 'nothing_here' is deployed"):
        drift(conn, model="nothing_here")


# --- retrain_if_drifted --------------------------------------------------------------------------

def test_retrain_after_drift_promotes_a_model_that_recovers_the_new_formula(conn):
    fresh(conn, 20000)
    add_rows(conn, 5000, income_shift=0.010)
    logged = retrain(conn, threshold=1.5, window_rows=5000)
    assert (logged["decision"], logged["deployed_version"], logged["new_version"]) == ("promoted", 1, 2)
    assert logged["window_rows"] == 5000
    assert logged["candidate_mae"] * 5 < logged["deployed_holdout_mae"]
    assert deployed(conn) == 2
    params, metrics, source, rows = conn.execute(
        "SELECT parameters, metrics, source, training_rows FROM ml_model_versions"
        " WHERE model_name = %s AND version = 2", [MODEL]).fetchone()
    coefficients = params["coefficients"]
    assert coefficients["income"] == pytest.approx(0.025, abs=0.0005)
    assert coefficients["age"] == pytest.approx(12, abs=0.5)
    assert coefficients["credit_score"] == pytest.approx(2, abs=0.2)
    assert params["intercept"] == pytest.approx(-1200, abs=100)
    assert (source, rows, metrics["holdout_rows"], metrics["replaced_version"]) == ("retrain_if_drifted", 4000, 1000, 1)
    assert metrics["mae"] == pytest.approx(logged["candidate_mae"])
    # the new version is the next drift check's baseline: the job settles
    again = retrain(conn, threshold=1.5, window_rows=5000)
    assert (again["decision"], again["deployed_version"]) == ("no drift", 2)
    assert [r[0] for r in conn.execute("SELECT decision FROM ml_retraining_log ORDER BY log_id")] == ["promoted", "no drift"]


def test_two_concurrent_runs_make_one_decision_each_and_retrain_once(conn):
    import threading

    fresh(conn, 20000)
    add_rows(conn, 5000, income_shift=0.010)
    decisions, failures = [], []
    start = threading.Barrier(2)

    def run():
        try:
            with pgmlkit.connect() as own:
                own.execute("SELECT 1 FROM purchase_model_drift()")      # imports done before the race
                start.wait(timeout=60)
                decisions.append(retrain(own, threshold=1.5, window_rows=5000)["decision"])
        except Exception as error:          # reported below; a thread's exception would be lost
            failures.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sorted(decisions) == ["no drift", "promoted"]     # the second waited, then saw the new version
    assert deployments(conn) == [1, 2]


def test_retrain_refuses_a_candidate_that_is_worse_on_the_holdout(conn):
    fresh(conn, 20000)
    add_rows(conn, 2000, cents_every=20)         # a batch where every 20th amount was recorded in cents
    logged = retrain(conn, threshold=1.5, window_rows=5000)
    assert logged["drift_ratio"] > 10            # the check fires: it cannot tell bad data from a new world
    assert logged["decision"] == "refused"
    assert logged["candidate_mae"] > 1.5 * logged["deployed_holdout_mae"]
    assert logged["new_version"] is None
    assert logged["reason"].endswith("kept version 1")
    assert deployed(conn) == 1
    assert conn.execute("SELECT count(*) FROM ml_model_versions").fetchone()[0] == 1   # nothing registered


def test_a_version_without_metrics_is_replaced_by_a_measured_one(conn):
    fresh(conn, 5000)
    conn.execute("UPDATE ml_models SET model_data = train_model() WHERE model_name = 'purchase_predictor'")
    logged = retrain(conn, threshold=1.5)
    assert (logged["decision"], logged["deployed_version"], logged["new_version"]) == ("promoted", 2, 3)
    assert "has no holdout metrics" in logged["reason"]
    assert logged["window_rows"] == 5003         # NULL window: all rows, as the talk retrains
    assert conn.execute("SELECT mae IS NOT NULL FROM ml_model_history WHERE deployed").fetchone()[0]


def test_retrain_skips_when_there_is_too_little_data(conn):
    fresh(conn, 20)
    logged = retrain(conn, threshold=1.5)
    assert (logged["decision"], logged["recent_rows"]) == ("skipped", 23)
    assert logged["reason"] == "only 23 labelled rows to check; at least 30 are needed"


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": 0}, "threshold must be a positive ratio, got 0"),
    ({"threshold": None}, "threshold must be a positive ratio, got NULL"),
    ({"threshold": 1.5, "window_rows": 10}, "window_rows must be at least 50"),
    ({"threshold": 1.5, "holdout_fraction": 1.0}, "holdout_fraction must be between 0 and 1, got 1"),
    ({"threshold": 1.5, "tolerance": -0.1}, "tolerance must be between 0 and 1, got -0.1"),
])
def test_retrain_arguments_are_checked(conn, kwargs, message):
    fresh(conn, 2000)
    with pytest.raises(errors.InvalidParameterValue, match=message):
        retrain(conn, **kwargs)
    assert conn.execute("SELECT count(*) FROM ml_retraining_log").fetchone()[0] == 0


def test_a_decision_and_its_log_row_commit_or_roll_back_together(conn):
    fresh(conn, 20000)
    add_rows(conn, 5000, income_shift=0.010)
    with conn.transaction(force_rollback=True):
        assert retrain(conn, threshold=1.5, window_rows=5000)["decision"] == "promoted"
    assert deployed(conn) == 1
    assert conn.execute("SELECT count(*) FROM ml_retraining_log").fetchone()[0] == 0


# --- the schedule ----------------------------------------------------------------------------------

@pytest.fixture()
def cron(conn):
    cron_db = conn.execute("SELECT current_setting('cron.database_name', true)").fetchone()[0]
    here = conn.execute("SELECT current_database()").fetchone()[0]
    if cron_db != here:
        pytest.skip(f"pg_cron can only be created in database {cron_db!r}; these tests run in {here!r}")
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
    yield conn
    conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s", [JOB])


COMMAND = "SELECT decision FROM retrain_if_drifted(1.5, window_rows => 5000)"


def test_schedule_by_name_is_idempotent(cron):
    first = cron.execute("SELECT cron.schedule(%s, '*/5 * * * *', %s)", [JOB, COMMAND]).fetchone()[0]
    second = cron.execute("SELECT cron.schedule(%s, '*/5 * * * *', %s)", [JOB, COMMAND]).fetchone()[0]
    assert first == second
    jobs = cron.execute("SELECT schedule, command, database, active FROM cron.job WHERE jobname = %s",
                        [JOB]).fetchall()
    here = cron.execute("SELECT current_database()").fetchone()[0]
    assert jobs == [("*/5 * * * *", COMMAND, here, True)]
    cron.execute("SELECT cron.schedule(%s, '0 * * * *', %s)", [JOB, COMMAND])    # same name: replaced
    assert cron.execute("SELECT jobid, schedule FROM cron.job WHERE jobname = %s", [JOB]).fetchall() == [(first, "0 * * * *")]


def test_the_scheduled_command_runs_as_written(cron):
    """pg_cron 1.4 schedules by the minute at best, so instead of waiting for the scheduler the test
    runs the job's stored command itself, exactly as the scheduler would send it."""
    fresh(cron, 20000)
    add_rows(cron, 5000, income_shift=0.010)
    cron.execute("SELECT cron.schedule(%s, '*/5 * * * *', %s)", [JOB, COMMAND])
    command = cron.execute("SELECT command FROM cron.job WHERE jobname = %s", [JOB]).fetchone()[0]
    assert cron.execute(command).fetchone()[0] == "promoted"
    assert cron.execute(command).fetchone()[0] == "no drift"
    assert deployed(cron) == 2
