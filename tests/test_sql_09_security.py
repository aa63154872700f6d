"""sql/09_hardening.sql, security: the role model, no model bytes from callers, signed models, size limits.

The crafted-pickle test plants, as an attacker with write access to the registry tables would,
a pickle that creates a canary file when unpickled, deploys it, and proves every path refuses it
and the canary never appears — and, as the control, that the same bytes DO run once the signing
key is taken away (so the test fails if the protection is removed).
"""
from __future__ import annotations

import os
import pickle
import uuid

import psycopg
import pytest

import pgmlkit

FILES = ("02_sample_data.sql", "04_training.sql", "05_prediction.sql", "06_triggers.sql",
         "07_retraining.sql", "09_hardening.sql")
PLANTED = "test09_planted"


def role_url(user: str) -> str:
    """DATABASE_URL as a demo login role (its password is its name)."""
    return pgmlkit.database_url(user=user, password=user)


def forget(conn, prefix="test09_"):
    conn.execute("DELETE FROM ml_prediction_errors WHERE model_name LIKE %s", [prefix + "%"])
    conn.execute("DELETE FROM ml_models WHERE model_name LIKE %s", [prefix + "%"])
    conn.execute("DELETE FROM ml_model_deployments WHERE model_name LIKE %s", [prefix + "%"])
    conn.execute("DELETE FROM ml_private.model_signatures WHERE model_name LIKE %s", [prefix + "%"])
    conn.execute("DELETE FROM ml_model_versions WHERE model_name LIKE %s", [prefix + "%"])


@pytest.fixture(scope="module")
def db():
    with pgmlkit.connect() as conn:
        for name in FILES:
            pgmlkit.run_sql_file(name, conn)
        forget(conn)
        if conn.execute("SELECT count(*) FROM customer_data WHERE purchase_amount IS NOT NULL").fetchone()[0] < 1000:
            conn.execute("SELECT load_sample_customers(5000, 42)")
        if conn.execute("SELECT count(*) FROM ml_models WHERE model_name = 'purchase_predictor'").fetchone()[0] == 0:
            conn.execute("SELECT train_purchase_model()")
        yield conn
        forget(conn)


class Canary:
    """Unpickling this object calls open(path, 'w'): it creates the file. Any code could run instead."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture()
def planted(db):
    """A crafted pickle written straight into the registry and deployed, with a correct sha256 and the
    real library versions copied from a genuine row: everything but a signature."""
    canary = f"/tmp/pgmlkit-canary-{uuid.uuid4().hex}"
    payload = pickle.dumps(Canary(canary))
    forget(db)
    db.execute(
        "INSERT INTO ml_model_versions (model_name, version, model_data, model_sha256, algorithm, features,"
        "                               library_versions, source)"
        " SELECT %s, 1, %s, encode(sha256(%s), 'hex'), 'LinearRegression', '{age,income,credit_score}',"
        "        library_versions, 'train_purchase_model'"
        "   FROM ml_model_versions ORDER BY model_id DESC LIMIT 1", [PLANTED, payload, payload])
    db.execute("INSERT INTO ml_models (model_name, model_data, version) VALUES (%s, %s, 1)", [PLANTED, payload])
    yield canary
    if os.path.exists(canary):
        os.remove(canary)
    forget(db)


def test_the_application_role_can_call_no_function_that_takes_bytes(db):
    callable_ = db.execute("SELECT function_name::text, security_definer, takes_bytea, search_path_fixed"
                           " FROM ml_callable_functions('ml_app')").fetchall()
    names = [row[0] for row in callable_]
    assert "ml.predict_purchase_amount(integer,double precision,integer)" in names
    assert not [n for n, _, bytea, _ in callable_ if bytea], callable_
    assert all(definer and fixed for _, definer, _, fixed in callable_), callable_
    assert all(n.startswith("ml.") for n in names), names          # nothing from public
    # and the roles that can call register_model_version (the one function that takes model bytes):
    can_register = db.execute(
        "SELECT r FROM unnest(ARRAY['ml_app', 'ml_trainer', 'ml_app_demo', 'ml_trainer_demo']) AS r"
        " WHERE has_function_privilege(r, 'register_model_version(text,bytea,text,text,text[],text,bigint,"
        "jsonb,jsonb,jsonb)', 'EXECUTE')").fetchall()
    assert can_register == []


def test_no_kit_function_is_executable_by_public(db):
    public = db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
        " WHERE p.pronamespace IN ('public'::regnamespace, 'ml'::regnamespace, 'ml_private'::regnamespace)"
        "   AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'"
        "   AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')").fetchall()
    assert public == []


def test_wrappers_and_triggers_run_as_the_owner_not_a_superuser(db):
    rows = db.execute(
        "SELECT p.oid::regprocedure::text, p.proowner::regrole::text, p.prosecdef, p.proconfig"
        "  FROM pg_proc p WHERE p.pronamespace = 'ml'::regnamespace"
        "    OR p.oid IN ('predict_purchase_trigger()'::regprocedure, 'flag_fraud_trigger()'::regprocedure,"
        "                 'predict_purchase_batch_trigger()'::regprocedure)").fetchall()
    assert len(rows) >= 10
    for name, owner, definer, config in rows:
        assert owner == "ml_owner" and definer, name
        assert "search_path=public, pg_temp" in (config or []), (name, config)
    assert not db.execute("SELECT rolsuper OR rolcanlogin FROM pg_roles WHERE rolname = 'ml_owner'").fetchone()[0]


def test_the_application_role_cannot_overwrite_read_or_load_a_model(db):
    before = db.execute("SELECT version, model_sha256 FROM ml_models JOIN ml_model_versions USING (model_name, version)"
                        " WHERE model_name = 'purchase_predictor'").fetchone()
    attempts = [
        "UPDATE ml_models SET model_data = '\\x00' WHERE model_name = 'purchase_predictor'",
        "INSERT INTO ml_models (model_name, model_data) VALUES ('purchase_predictor', '\\x00')",
        "INSERT INTO ml_model_versions (model_name, version, model_data, model_sha256, library_versions, source)"
        " VALUES ('x', 1, '\\x00', 'x', '{}', 'x')",
        "DELETE FROM ml_model_deployments",
        "SELECT model_data FROM ml_model_versions LIMIT 1",
        "SELECT register_model_version('purchase_predictor', '\\x00', 'attack')",
        "SELECT ml_load_model('purchase_predictor')",
        "SELECT ml_promote('purchase_predictor', 1)",
        "SELECT key FROM ml_private.model_signing_key",
        "SELECT ml_private.sign_model_version('purchase_predictor', 1)",
        "UPDATE ml_prediction_settings SET on_failure = 'reject'",
        "INSERT INTO customer_data (age, income, credit_score, predicted_purchase, model_version) VALUES (1, 2, 3, 4, 5)",
        "SELECT ml.train_purchase_model('purchase_predictor')",
    ]
    with psycopg.connect(role_url("ml_app_demo"), autocommit=True) as app:
        for statement in attempts:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)
        # what it may do: insert a business row (the trigger predicts) and call the ml.* functions
        row = app.execute("INSERT INTO customer_data (age, income, credit_score) VALUES (40, 60000, 700)"
                          " RETURNING id, predicted_purchase, model_version").fetchone()
        assert row[1] is not None and row[2] == before[0]
        predicted = app.execute("SELECT ml.predict_purchase_amount(40, 60000, 700)").fetchone()[0]
        assert abs(float(row[1]) - predicted) < 0.01
    db.execute("DELETE FROM customer_data WHERE id = %s", [row[0]])
    after = db.execute("SELECT version, model_sha256 FROM ml_models JOIN ml_model_versions USING (model_name, version)"
                       " WHERE model_name = 'purchase_predictor'").fetchone()
    assert after == before


def test_a_trainer_trains_through_the_wrapper_and_is_recorded(db):
    with psycopg.connect(role_url("ml_trainer_demo"), autocommit=True) as trainer:
        version = trainer.execute("SELECT ml.train_purchase_model('test09_trainer', 'linear', false, '{}', 2000)").fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            trainer.execute("SELECT register_model_version('test09_trainer', '\\x00', 'attack')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            trainer.execute("SELECT model_data FROM ml_model_versions")
        history = trainer.execute("SELECT version, deployed FROM ml_model_history WHERE model_name = 'test09_trainer'").fetchall()
        assert history == [(version, False)]
    trained_by, status = db.execute(
        "SELECT trained_by, ml_private.model_signature_status(model_name, version) FROM ml_model_versions"
        " WHERE model_name = 'test09_trainer' AND version = %s", [version]).fetchone()
    assert trained_by == "ml_trainer_demo"        # the login role, not the definer
    assert status == "valid"                      # signed on the training path


def test_a_crafted_pickle_in_the_registry_is_refused_and_never_runs(db, planted):
    canary = planted
    assert db.execute("SELECT ml_private.model_signature_status(%s, 1)", [PLANTED]).fetchone()[0] == "unsigned"
    # 1. the loader itself
    with pytest.raises(psycopg.errors.DataCorrupted, match="signature"):
        db.execute("SELECT ml_load_model(%s)", [PLANTED])
    # 2. the application's prediction function
    with psycopg.connect(role_url("ml_app_demo"), autocommit=True) as app:
        with pytest.raises(psycopg.Error, match="signature"):
            app.execute("SELECT ml.predict(%s, ARRAY[40, 60000, 700])", [PLANTED])
    # 3. the failure-safe trigger: the row is kept, the refusal logged
    with db.transaction(force_rollback=True):
        db.execute("UPDATE ml_prediction_settings SET model_name = %s WHERE table_name = 'customer_data'", [PLANTED])
        row = db.execute("INSERT INTO customer_data (age, income, credit_score) VALUES (40, 60000, 700)"
                         " RETURNING id, predicted_purchase").fetchone()
        assert row[1] is None
        error = db.execute("SELECT error FROM ml_prediction_errors WHERE table_name = 'customer_data' AND row_id = %s"
                           " ORDER BY error_id DESC LIMIT 1", [row[0]]).fetchone()[0]
        assert "signature" in error
    assert not os.path.exists(canary)


def test_without_the_key_the_loader_refuses_too(db, planted):
    """Signed from the start: a registry without a key is not "signing not configured" any more
    (which trusted the digest alone) but a state the loader refuses. (Deliberately changed, issue 11.)"""
    canary = planted
    with db.transaction(force_rollback=True):
        db.execute("DELETE FROM ml_private.model_signing_key")
        with pytest.raises(psycopg.errors.DataCorrupted, match="no signing key"):
            db.execute("SELECT ml_load_model(%s)", [PLANTED])
    assert not os.path.exists(canary)


def test_a_tampered_signed_model_is_refused(db):
    """Bytes changed after signing (sha256 recomputed by the attacker too): the HMAC no longer matches."""
    version = db.execute("SELECT train_purchase_model('test09_tampered', 'linear', true, '{}', 0.2, 42, 500)").fetchone()[0]
    with db.transaction(force_rollback=True):
        db.execute("SET LOCAL session_replication_role = replica")      # bypass the immutability trigger
        db.execute("UPDATE ml_model_versions SET model_data = model_data || '\\x00'::bytea,"
                   "       model_sha256 = encode(sha256(model_data || '\\x00'::bytea), 'hex')"
                   " WHERE model_name = 'test09_tampered' AND version = %s", [version])
        db.execute("RESET session_replication_role")
        assert db.execute("SELECT ml_private.model_signature_status('test09_tampered', %s)", [version]).fetchone()[0] == "mismatch"
        with pytest.raises(psycopg.errors.DataCorrupted, match="signature"):
            db.execute("SELECT ml_load_model('test09_tampered')")


def test_models_larger_than_the_limit_are_refused_at_registration(db):
    with db.transaction(force_rollback=True):
        db.execute("UPDATE ml_registry_limits SET max_model_bytes = 1000")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="max_model_bytes"):
            db.execute("SELECT train_purchase_model('test09_big', 'decision_tree', true, '{}', 0.2, 42, 2000)")
    assert db.execute("SELECT count(*) FROM ml_model_versions WHERE model_name = 'test09_big'").fetchone()[0] == 0


def test_applying_the_file_twice_keeps_the_key_and_signs_nothing_new(db, planted):
    key_before = db.execute("SELECT created_at FROM ml_private.model_signing_key").fetchone()
    pgmlkit.run_sql_file("09_hardening.sql", db)
    assert db.execute("SELECT created_at FROM ml_private.model_signing_key").fetchone() == key_before
    assert db.execute("SELECT ml_private.model_signature_status(%s, 1)", [PLANTED]).fetchone()[0] == "unsigned"
