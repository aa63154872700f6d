"""sql/09 concurrency: retraining while other sessions insert (and predict), a pgbench run of
inserts with the trigger on, and two trainers racing to train and promote.

Real connections in threads, as the application role; no mocks.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from urllib.parse import urlsplit

import psycopg
import pytest

import pgmlkit

FILES = ("02_sample_data.sql", "04_training.sql", "05_prediction.sql", "06_triggers.sql",
         "07_retraining.sql", "09_hardening.sql")
INSERT = "INSERT INTO customer_data (age, income, credit_score) VALUES (%s, %s, %s) RETURNING id, model_version"


def role_url(user: str) -> str:
    """DATABASE_URL as a demo login role (its password is its name)."""
    return pgmlkit.database_url(user=user, password=user)


@pytest.fixture(scope="module")
def db():
    with pgmlkit.connect() as conn:
        for name in FILES:
            pgmlkit.run_sql_file(name, conn)
        # Its own rows, whatever ran before: the timings below assume 5,000 customers, not 100,000.
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")     # no trigger scores the load
            conn.execute("SELECT load_sample_customers(5000, 42)")
        if conn.execute("SELECT count(*) FROM ml_models WHERE model_name = 'purchase_predictor'").fetchone()[0] == 0:
            conn.execute("SELECT train_purchase_model()")
        conn.execute("SELECT use_prediction_trigger('row')")
        conn.execute("UPDATE ml_prediction_settings SET model_name = 'purchase_predictor', on_failure = 'log'"
                     " WHERE table_name = 'customer_data'")
        yield conn
        conn.execute("DELETE FROM ml_models WHERE model_name = 'test09_race'")
        conn.execute("DELETE FROM ml_model_deployments WHERE model_name = 'test09_race'")
        conn.execute("DELETE FROM ml_private.model_signatures WHERE model_name = 'test09_race'")
        conn.execute("DELETE FROM ml_model_versions WHERE model_name = 'test09_race'")


def deployed(db, name="purchase_predictor"):
    return db.execute("SELECT version FROM ml_models WHERE model_name = %s", [name]).fetchone()[0]


def latest(db, name="purchase_predictor"):
    """The newest version trained, deployed or not (an earlier run may have left undeployed ones)."""
    return db.execute("SELECT max(version) FROM ml_model_versions WHERE model_name = %s", [name]).fetchone()[0]


def test_retraining_while_sessions_insert(db):
    """Four application sessions insert and predict while a trainer retrains and promotes.
    No errors; every row names the version that predicted it; once the retrain has committed,
    every session's next statement uses the new version."""
    old, newest_before = deployed(db), latest(db)
    errors_before = db.execute("SELECT count(*) FROM ml_prediction_errors").fetchone()[0]
    committed = threading.Event()
    stop = threading.Event()
    results, failures = {}, []

    def worker(n):
        seen = []
        try:
            with psycopg.connect(role_url("ml_app_demo"), autocommit=True) as app:
                app.execute("SELECT ml.predict_purchase_amount(40, 60000, 700)")       # warm the session
                while not stop.is_set():
                    after_commit = committed.is_set()                        # read BEFORE the statement starts
                    row_id, version = app.execute(INSERT, [30 + n, 50000, 650]).fetchone()
                    predicted = app.execute("SELECT ml.predict('purchase_predictor', ARRAY[40, 60000, 700])").fetchone()[0]
                    seen.append((after_commit, row_id, version, predicted))
        except Exception as error:                                           # pragma: no cover - reported below
            failures.append(repr(error))
        results[n] = seen

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    with psycopg.connect(role_url("ml_trainer_demo"), autocommit=True) as trainer:
        new = trainer.execute("SELECT ml.train_purchase_model('purchase_predictor', 'linear', true, '{}', 3000)").fetchone()[0]
    committed.set()
    threading.Event().wait(1.5)
    stop.set()
    for t in threads:
        t.join(60)
    assert failures == []
    assert new == newest_before + 1 and deployed(db) == new
    for n, seen in results.items():
        assert seen, f"worker {n} inserted nothing"
        assert all(version in (old, new) for _, _, version, _ in seen), seen
        after = [version for after_commit, _, version, _ in seen if after_commit]
        assert after and set(after) == {new}, (n, after)
    stored = dict(db.execute("SELECT id, model_version FROM customer_data WHERE id = ANY(%s)",
                             [[row for seen in results.values() for _, row, _, _ in seen]]).fetchall())
    assert all(stored[row] == version for seen in results.values() for _, row, version, _ in seen)
    assert db.execute("SELECT count(*) FROM ml_prediction_errors").fetchone()[0] == errors_before


def test_two_trainers_at_once_leave_one_active_version(db):
    barrier = threading.Barrier(2)
    versions, failures = [], []

    def train():
        try:
            with psycopg.connect(role_url("ml_trainer_demo"), autocommit=True) as trainer:
                barrier.wait()
                versions.append(trainer.execute(
                    "SELECT ml.train_purchase_model('test09_race', 'linear', true, '{}', 2000)").fetchone()[0])
        except Exception as error:                                           # pragma: no cover
            failures.append(repr(error))

    threads = [threading.Thread(target=train) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    assert len(versions) == 2 and len(set(versions)) == 2
    active = db.execute("SELECT version FROM ml_models WHERE model_name = 'test09_race'").fetchall()
    assert len(active) == 1
    last_logged = db.execute("SELECT version FROM ml_model_deployments WHERE model_name = 'test09_race'"
                             " ORDER BY deployment_id DESC LIMIT 1").fetchone()[0]
    assert active[0][0] == last_logged
    assert db.execute("SELECT count(*) FROM ml_model_deployments WHERE model_name = 'test09_race'").fetchone()[0] == 2


@pytest.mark.skipif(shutil.which("pgbench") is None, reason="pgbench is not installed")
def test_pgbench_inserts_with_the_trigger_and_a_retrain_in_the_middle(db):
    """pgbench -n -f insert.sql -c 4 -j 2 -T 15 as the application role; a retrain commits after ~2 s
    (plus its training time, which leaves pgbench well over 5 s with the new version on a loaded machine).
    Zero failed transactions, every inserted row predicted, both versions seen."""
    old = deployed(db)
    first_id = db.execute("SELECT coalesce(max(id), 0) FROM customer_data").fetchone()[0]
    errors_before = db.execute("SELECT count(*) FROM ml_prediction_errors").fetchone()[0]
    parts = urlsplit(pgmlkit.database_url())
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("\\set age random(18, 75)\n\\set income random(15000, 135000)\n"
                     "\\set credit_score random(300, 850)\n"
                     "INSERT INTO customer_data (age, income, credit_score) VALUES (:age, :income, :credit_score);\n")
    env = dict(os.environ, PGPASSWORD="ml_app_demo")
    bench = subprocess.Popen(
        ["pgbench", "-n", "-f", script.name, "-c", "4", "-j", "2", "-T", "15",
         "-h", parts.hostname or "localhost", "-p", str(parts.port or 5432), "-U", "ml_app_demo",
         parts.path.lstrip("/")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Event().wait(2)
    new = db.execute("SELECT train_purchase_model('purchase_predictor', 'linear', true, '{}', 0.2, 42, 3000)").fetchone()[0]
    output, _ = bench.communicate(timeout=120)
    os.unlink(script.name)
    assert bench.returncode == 0, output
    processed = int(re.search(r"number of transactions actually processed: (\d+)", output).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", output)
    tps = float(re.search(r"tps = ([\d.]+)", output).group(1))
    print(f"pgbench: {processed} inserts, {tps:.0f} tps, failed: {failed.group(1) if failed else 'n/a'}")
    assert processed > 0 and tps > 0
    assert failed is None or int(failed.group(1)) == 0
    by_version = dict(db.execute("SELECT model_version, count(*) FROM customer_data WHERE id > %s GROUP BY 1",
                                 [first_id]).fetchall())
    assert sum(by_version.values()) == processed                # every transaction stored its row
    assert set(by_version) == {old, new}                        # no NULL: every row was predicted
    assert db.execute("SELECT count(*) FROM ml_prediction_errors").fetchone()[0] == errors_before
