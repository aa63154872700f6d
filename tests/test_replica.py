"""scripts/replica.sh: a streaming hot standby serves the primary's new model versions, read-only.

Needs the native primary on localhost:KIT_PORT (make db); the replica is started with
scripts/replica.sh up (idempotent) and left running.
"""
from __future__ import annotations

import os
import subprocess
import time
from urllib.parse import urlsplit

import psycopg
import pytest

import pgmlkit

MODEL = "test_replica_model"
replica_url = pgmlkit.replica_url     # REPLICA_PORT from the environment (as .ci/run sets it), else kit.env


@pytest.fixture(scope="module")
def replica_started():
    url = urlsplit(pgmlkit.database_url())
    kit_port = int(pgmlkit.kit_settings()["KIT_PORT"])
    if url.hostname not in ("localhost", "127.0.0.1") or (url.port or 5432) != kit_port:
        pytest.skip(f"the replica is made from the kit's native primary on localhost:{kit_port}; DATABASE_URL points elsewhere")
    done = subprocess.run([str(pgmlkit.KIT_ROOT / "scripts" / "replica.sh"), "up"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"scripts/replica.sh up failed:\n{done.stderr}"


@pytest.fixture()
def replica(replica_started):
    """A connection per test: one test rebuilds the replica, which ends every session on it."""
    connection = psycopg.connect(replica_url(), autocommit=True)
    yield connection
    connection.close()


@pytest.fixture()
def primary(conn, apply_sql):
    apply_sql("02_sample_data.sql", "04_training.sql", "05_prediction.sql", "10_compiled_models.sql")
    if conn.execute("SELECT count(purchase_amount) FROM customer_data").fetchone()[0] < 2000:   # labelled rows
        conn.execute("SELECT load_sample_customers(20000, 42)")
    # This test's compiled function, left by an earlier run whose provenance rows a notebook reset removed.
    if not conn.execute("SELECT 1 FROM ml_compiled_functions WHERE function_name = %s", [MODEL + "_sql"]).fetchone():
        conn.execute(f"DROP FUNCTION IF EXISTS {MODEL}_sql(double precision, double precision, double precision)")
    return conn


def wait_for_replay(primary, replica, timeout=60.0) -> float:
    """Seconds until the replica has replayed everything the primary had written when called."""
    lsn = primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    started = time.monotonic()
    while not replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()[0]:
        assert time.monotonic() - started < timeout, f"the replica did not replay up to {lsn} in {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_replica_is_a_streaming_standby(primary, replica):
    assert replica.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
    assert replica.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()[0] == "streaming"
    assert primary.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()[0] >= 1


def test_new_model_version_is_visible_on_the_replica(primary, replica):
    new = primary.execute("SELECT train_purchase_model(%s, 'linear', true, '{}', 0.2, %s, 2000)",
                          [MODEL, int(time.time()) % 100000]).fetchone()[0]
    wait_for_replay(primary, replica)
    assert replica.execute("SELECT version FROM ml_models WHERE model_name = %s", [MODEL]).fetchone()[0] == new
    digest = primary.execute("SELECT model_sha256 FROM ml_model_versions WHERE model_name = %s AND version = %s",
                             [MODEL, new]).fetchone()[0]
    assert replica.execute("SELECT model_sha256 FROM ml_model_versions WHERE model_name = %s AND version = %s",
                           [MODEL, new]).fetchone()[0] == digest


def test_predictions_on_the_replica_match_the_primary(primary, replica):
    rows = "(SELECT id, age, income, credit_score FROM customer_data ORDER BY id LIMIT 2000) AS s"
    query = (f"SELECT array_agg(ml_predict(%s, ARRAY[age, income::float8, credit_score]) ORDER BY id),"
             f" array_agg(ml_predict('{MODEL}_rf', ARRAY[age, income::float8, credit_score]) ORDER BY id),"
             f" array_agg({MODEL}_sql(age, income, credit_score) ORDER BY id) FROM {rows}")
    for seed in (1, 2):      # the replica's session cache must follow a retrain, too
        primary.execute("SELECT train_purchase_model(%s, 'linear', true, '{}', 0.2, %s, 3000)", [MODEL, seed])
        primary.execute("SELECT train_purchase_model(%s, 'random_forest', true, '{\"n_estimators\": 5, \"max_depth\": 5}',"
                        " 0.2, %s, 3000)", [MODEL + "_rf", seed])
        primary.execute("SELECT ml_deploy_compiled(%s, %s)", [MODEL, MODEL + "_sql"])
        wait_for_replay(primary, replica)
        on_primary = primary.execute(query, [MODEL]).fetchone()
        on_replica = replica.execute(query, [MODEL]).fetchone()
        assert len(on_replica[0]) == 2000 and None not in on_replica[0]
        assert on_replica == on_primary
        assert replica.execute("SELECT ml_compiled_is_current(%s)", [MODEL + "_sql"]).fetchone()[0] is True


def test_the_replica_refuses_writes(primary, replica):
    # A deployed model on the replica too, so ml_deploy_compiled gets as far as its write.
    if not primary.execute("SELECT 1 FROM ml_models WHERE model_name = %s", [MODEL]).fetchone():
        primary.execute("SELECT train_purchase_model(%s, 'linear', true, '{}', 0.2, 42, 2000)", [MODEL])
    wait_for_replay(primary, replica)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="read-only transaction"):
        replica.execute("SELECT train_purchase_model(%s, 'linear')", [MODEL])
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        replica.execute("INSERT INTO ml_models (model_name, model_data) VALUES ('x', '\\x00')")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        replica.execute("SELECT ml_deploy_compiled(%s, %s)", [MODEL, MODEL + "_sql"])


def test_up_repairs_a_replica_that_does_not_stream(primary, replica_started):
    """A standby pointed at nothing (here: its primary_conninfo names a dead port) is rebuilt by `up`."""
    script = str(pgmlkit.KIT_ROOT / "scripts" / "replica.sh")
    as_root = os.geteuid() == 0
    cluster = os.environ.get("REPLICA_CLUSTER", pgmlkit.kit_settings()["KIT_CLUSTER"] + "_replica")
    data = (f"/var/lib/postgresql/{pgmlkit.kit_settings()['PG_MAJOR']}/{cluster}" if as_root
            else str(pgmlkit.KIT_ROOT / ".kit" / cluster))
    owner = ["runuser", "-u", "postgres", "--"] if as_root else []
    assert subprocess.run([script, "stop"], capture_output=True).returncode == 0
    subprocess.run([*owner, "sed", "-i", "s/port=[0-9]*/port=1/", f"{data}/postgresql.auto.conf"], check=True, cwd="/")
    done = subprocess.run([script, "up"], capture_output=True, text=True, timeout=600,
                          env=os.environ | {"REPLICA_STREAM_TIMEOUT": "5"})
    assert done.returncode == 0, done.stderr
    assert "does not stream from the primary" in done.stderr and "rebuilding it" in done.stderr
    with psycopg.connect(replica_url(), autocommit=True) as again:
        assert again.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()[0] == "streaming"
        assert f"port={pgmlkit.kit_settings()['KIT_PORT']}" in again.execute("SHOW primary_conninfo").fetchone()[0]


def test_concurrent_ups_leave_a_running_replica_alone(replica_started):
    """Notebook lanes reset their databases at once and each reset runs `up`: none may restart the replica.

    Before replica.sh took a lock, one run read the config files another was rewriting, saw a "change"
    and restarted the replica under it (CI: "Cluster data directory is unknown"). And a replica started
    under the lock must not keep it (a server inherits open files): the next `up` would wait forever.
    """
    script = str(pgmlkit.KIT_ROOT / "scripts" / "replica.sh")
    cluster = os.environ.get("REPLICA_CLUSTER", pgmlkit.kit_settings()["KIT_CLUSTER"] + "_replica")
    lock = (f"/run/lock/pg-ml-kit-{cluster}.lock" if os.geteuid() == 0
            else str(pgmlkit.KIT_ROOT / ".kit" / f"pg-ml-kit-{cluster}.lock"))
    assert subprocess.run([script, "stop"], capture_output=True).returncode == 0
    started = subprocess.run([script, "up"], capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, started.stderr
    free = subprocess.run(["flock", "--nonblock", lock, "true"], capture_output=True, text=True)
    assert free.returncode == 0, f"the replica's lock is still held after `up` returned: {lock}"
    for _ in range(3):
        runs = [subprocess.Popen([script, "up"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for _ in range(4)]
        for run in runs:
            stderr = run.communicate(timeout=120)[1]
            assert run.returncode == 0, stderr
            assert "Restarting" not in stderr, stderr
    with psycopg.connect(replica_url(), autocommit=True) as again:
        assert again.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()[0] == "streaming"
