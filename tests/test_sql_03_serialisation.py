"""sql/03_serialisation.sql against the real database: storing models with their digest, training
in each format, and the loader's checks (digest, library version, skops allow-list); NULLs, wrong
types and idempotence."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
from importlib import metadata

import numpy as np
import psycopg
import pytest
import skops.io as sio
from sklearn.linear_model import LinearRegression

import pgmlkit

SQL = "03_serialisation.sql"
FEATURES = ["age", "income", "credit_score"]
PROBES = [(40, 60000, 700), (25, 20000, 550), (70, 130000, 820)]


@pytest.fixture(scope="module")
def conn():
    """One connection for the module: the server imports scikit-learn once, not once per test."""
    connection = pgmlkit.connect()
    yield connection
    connection.close()


@pytest.fixture(autouse=True)
def lesson(apply_sql, conn):
    apply_sql("02_sample_data.sql", SQL)
    conn.execute("SELECT load_sample_customers(500, 42)")
    conn.execute("TRUNCATE serialisation_demo")


@pytest.fixture()
def client_model(conn):
    rows = conn.execute("SELECT age::float8, income::float8, credit_score::float8, purchase_amount::float8"
                        " FROM customer_data ORDER BY id").fetchall()
    data = np.array(rows)
    return LinearRegression().fit(data[:, :3], data[:, 3])


def value(conn, query, params=None):
    return conn.execute(query, params).fetchone()[0]


def store(conn, name, fmt, data, versions=None):
    return value(conn, "SELECT serialisation_demo_store(%s, %s, %s, %s)",
                 [name, fmt, data, None if versions is None else json.dumps(versions)])


def predict(conn, name, age=40, income=60000, credit_score=700):
    return value(conn, "SELECT serialisation_demo_predict(%s, %s, %s, %s)", [name, age, income, credit_score])


def refused(conn, name, error=psycopg.Error):
    with pytest.raises(error) as caught:
        predict(conn, name)
    return caught.value.diag


def test_applying_the_file_twice_succeeds(apply_sql, conn):
    store(conn, "kept", "json", b'{"x": 1}')
    apply_sql(SQL, SQL)
    assert value(conn, "SELECT count(*) FROM serialisation_demo WHERE name = 'kept'") == 1   # data survives


# -- storing ------------------------------------------------------------------------------------

def test_library_versions_are_the_servers(conn):
    versions = value(conn, "SELECT serialisation_library_versions()")
    for package in ("scikit-learn", "numpy", "scipy", "skops"):
        assert versions[package] == metadata.version(package)     # the pins: server == client


def test_store_records_the_sha256_of_the_bytes(conn):
    data = pickle.dumps({"a": 1})
    digest = store(conn, "m", "pickle", data)
    assert digest == hashlib.sha256(data).hexdigest()
    row = conn.execute("SELECT format, model_data, model_sha256, library_versions FROM serialisation_demo"
                       " WHERE name = 'm'").fetchone()
    assert row[:3] == ("pickle", data, digest)
    assert row[3]["scikit-learn"] == metadata.version("scikit-learn")


def test_store_replaces_a_model_of_the_same_name(conn):
    store(conn, "m", "pickle", b"first")
    digest = store(conn, "m", "json", b"{}", {"scikit-learn": "0.0"})
    assert conn.execute("SELECT format, model_data, model_sha256, library_versions FROM serialisation_demo").fetchall() == \
        [("json", b"{}", digest, {"scikit-learn": "0.0"})]


@pytest.mark.parametrize("name, data", [(None, b"x"), ("m", None)])
def test_store_refuses_null_name_or_bytes(conn, name, data):
    with pytest.raises(psycopg.errors.NullValueNotAllowed) as caught:
        store(conn, name, "pickle", data)
    assert "needs a name and the model's bytes" in caught.value.diag.message_primary
    assert "serialisation_demo_store" in caught.value.diag.message_hint


@pytest.mark.parametrize("fmt", ["onnx", None])
def test_store_refuses_unknown_formats(conn, fmt):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        store(conn, "m", fmt, b"x")
    assert caught.value.diag.message_hint == "Use one of: pickle, skops, json."


def test_store_wrong_type_for_the_bytes(conn):
    with pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute("SELECT serialisation_demo_store('m', 'pickle', 'abc'::text)")


def test_the_table_refuses_a_malformed_digest(conn):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO serialisation_demo (name, format, model_data, model_sha256, library_versions)"
                     " VALUES ('m', 'pickle', 'x', 'not-a-digest', '{}')")


# -- verifying ----------------------------------------------------------------------------------

def test_verify_true_then_false_after_one_byte_changes(conn):
    store(conn, "m", "pickle", pickle.dumps(list(range(10))))
    assert value(conn, "SELECT serialisation_demo_verify('m')") is True
    conn.execute("UPDATE serialisation_demo SET model_data = set_byte(model_data, 20, get_byte(model_data, 20) # 1)")
    assert value(conn, "SELECT serialisation_demo_verify('m')") is False


@pytest.mark.parametrize("name", ["no_such_model", None])
def test_verify_unknown_or_null_name_is_null(conn, name):
    assert value(conn, "SELECT serialisation_demo_verify(%s)", [name]) is None


# -- training in the server ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["pickle", "skops", "json"])
def test_train_stores_a_verified_model_in_each_format(conn, fmt):
    digest = value(conn, "SELECT serialisation_demo_train('m', %s)", [fmt])
    stored_format, data = conn.execute("SELECT format, model_data FROM serialisation_demo WHERE name = 'm'").fetchone()
    assert stored_format == fmt and hashlib.sha256(data).hexdigest() == digest


def test_server_trained_pickle_loads_in_the_client_and_recovers_the_formula(conn, client_model):
    value(conn, "SELECT serialisation_demo_train('m', 'pickle')")
    server_model = pickle.loads(value(conn, "SELECT model_data FROM serialisation_demo WHERE name = 'm'"))  # our own bytes
    assert np.allclose(server_model.coef_, client_model.coef_, rtol=1e-9)
    truth = dict(conn.execute("SELECT term, value FROM sample_data_truth()").fetchall())
    for name, coefficient in zip(FEATURES, server_model.coef_):
        assert coefficient == pytest.approx(truth[name], rel=0.05)


def test_server_trained_json_document(conn, client_model):
    value(conn, "SELECT serialisation_demo_train('m', 'json')")
    doc = json.loads(value(conn, "SELECT convert_from(model_data, 'UTF8') FROM serialisation_demo WHERE name = 'm'"))
    assert doc["model"] == "LinearRegression" and doc["features"] == FEATURES
    assert doc["intercept"] == pytest.approx(float(client_model.intercept_), rel=1e-9)
    assert [doc["coefficients"][f] for f in FEATURES] == pytest.approx(list(client_model.coef_), rel=1e-9)


def test_train_refuses_unknown_format_and_null_name(conn):
    with pytest.raises(psycopg.errors.InternalError_) as caught:
        conn.execute("SELECT serialisation_demo_train('m', 'onnx')")
    assert "unknown format 'onnx'" in caught.value.diag.message_primary
    with pytest.raises(psycopg.errors.InternalError_) as caught:
        conn.execute("SELECT serialisation_demo_train(NULL)")
    assert "needs a name" in caught.value.diag.message_primary


def test_train_on_too_few_rows_says_how_to_load_data(conn):
    conn.execute("TRUNCATE customer_data")
    with pytest.raises(psycopg.errors.InternalError_) as caught:
        conn.execute("SELECT serialisation_demo_train('m')")
    assert "customer_data has 0 complete rows" in caught.value.diag.message_primary
    assert "load_sample_customers" in caught.value.diag.message_hint


# -- loading and predicting in the server -------------------------------------------------------

def test_all_formats_trained_in_the_server_predict_the_same(conn):
    for fmt in ("pickle", "skops", "json"):
        value(conn, "SELECT serialisation_demo_train(%s, %s)", [fmt, fmt])
    for probe in PROBES:
        pickled = predict(conn, "pickle", *probe)
        assert predict(conn, "skops", *probe) == pickled
        assert predict(conn, "json", *probe) == pytest.approx(pickled, rel=1e-12)
        assert value(conn, "SELECT serialisation_demo_predict_sql('json', %s, %s, %s)", probe) == \
            pytest.approx(pickled, rel=1e-12)


def test_client_pickle_and_client_skops_round_trip_through_the_server(conn, client_model):
    store(conn, "pickle", "pickle", pickle.dumps(client_model))
    skops_bytes = sio.dumps(client_model)
    assert sio.get_untrusted_types(data=skops_bytes) == []
    store(conn, "skops", "skops", skops_bytes)
    assert value(conn, "SELECT model_data FROM serialisation_demo WHERE name = 'skops'") == skops_bytes
    for probe in PROBES:
        expected = float(client_model.predict(np.array([probe], dtype=float))[0])
        assert predict(conn, "pickle", *probe) == pytest.approx(expected, rel=1e-12)
        assert predict(conn, "skops", *probe) == predict(conn, "pickle", *probe)   # identical, not just close


def test_predict_returns_a_plain_float8(conn):
    value(conn, "SELECT serialisation_demo_train('m', 'pickle')")
    assert value(conn, "SELECT pg_typeof(serialisation_demo_predict('m', 40, 60000, 700))::text") == "double precision"


@pytest.mark.parametrize("features", [(None, 60000, 700), (40, None, 700), (40, 60000, None)])
def test_predict_without_all_features_is_null(conn, features):
    value(conn, "SELECT serialisation_demo_train('m', 'pickle')")
    assert predict(conn, "m", *features) is None
    store(conn, "j", "json", b"{}")          # NULL features: no row is even read
    assert value(conn, "SELECT serialisation_demo_predict_sql('m', %s, %s, %s)", features) is None


def test_predict_null_or_unknown_name_is_an_error_with_a_hint(conn):
    diag = refused(conn, None)
    assert "needs a model name" in diag.message_primary and "serialisation_demo" in diag.message_hint
    diag = refused(conn, "no_such_model")
    assert "no model named 'no_such_model'" in diag.message_primary
    assert "serialisation_demo_train" in diag.message_hint


def test_predict_wrong_type(conn):
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="type double precision"):
        conn.execute("SELECT serialisation_demo_predict('m', 'forty', 60000, 700)")


# -- the loader's checks ------------------------------------------------------------------------

def test_tampered_bytes_are_refused_before_loading(conn, client_model):
    store(conn, "m", "pickle", pickle.dumps(client_model))
    # bytes that would fail loudly if unpickled: the error must be the digest's, so nothing was loaded
    conn.execute("UPDATE serialisation_demo SET model_data = %s", [pickle.dumps(client_model)[:-1]])
    diag = refused(conn, "m")
    # The kit's one loader (pgmlkit_server.loader) words it, with SQLSTATE XX001 data_corrupted.
    assert diag.message_primary == "plpy.Error: model 'm': bytes do not match their sha256 digest; refusing to unpickle"
    assert diag.sqlstate == "XX001" and "known-good" in diag.message_hint


def test_one_changed_coefficient_byte_is_refused(conn, client_model):
    data = pickle.dumps(client_model)
    at = data.index(client_model.coef_.tobytes()) + 7
    store(conn, "m", "pickle", data)
    conn.execute("UPDATE serialisation_demo SET model_data = set_byte(model_data, %s, get_byte(model_data, %s) # 1)",
                 [at, at])
    tampered = value(conn, "SELECT model_data FROM serialisation_demo")
    assert pickle.loads(tampered).coef_[0] != client_model.coef_[0]    # it would load, silently wrong
    assert "do not match their sha256 digest" in refused(conn, "m").message_primary


def test_tampered_json_is_null_in_sql_and_refused_in_python(conn):
    value(conn, "SELECT serialisation_demo_train('m', 'json')")
    conn.execute("UPDATE serialisation_demo SET model_data = convert_to(replace(convert_from(model_data, 'UTF8'),"
                 " '\"intercept\": ', '\"intercept\": 1'), 'UTF8')")
    assert value(conn, "SELECT serialisation_demo_predict_sql('m', 40, 60000, 700)") is None
    assert "sha256" in refused(conn, "m").message_primary


def test_predict_sql_only_reads_json_models(conn):
    value(conn, "SELECT serialisation_demo_train('m', 'pickle')")
    assert value(conn, "SELECT serialisation_demo_predict_sql('m', 40, 60000, 700)") is None
    assert value(conn, "SELECT serialisation_demo_predict_sql('no_such_model', 40, 60000, 700)") is None


def test_another_recorded_scikit_learn_version_is_refused_before_unpickling(conn):
    crafted = pickle.dumps(int)[:-1] + b"."          # not even a valid model: proves nothing is loaded first
    store(conn, "m", "pickle", crafted, {"scikit-learn": "0.9.1"})
    diag = refused(conn, "m")
    assert diag.message_primary == (f"plpy.Error: model 'm' was trained with scikit-learn 0.9.1, "
                                    f"this server runs {metadata.version('scikit-learn')}")
    assert diag.sqlstate == "55000"
    assert "retrain" in diag.message_hint


def test_a_pickle_recording_another_version_is_refused_even_with_honest_looking_metadata(conn, client_model):
    running = metadata.version("scikit-learn")
    data = pickle.dumps(client_model)
    older = data.replace(running.encode(), ("0" + running[1:]).encode())
    assert older != data and len(older) == len(data)
    store(conn, "m", "pickle", older)            # the row claims this server's version
    diag = refused(conn, "m")
    assert f"the pickle itself records scikit-learn 0{running[1:]}; this server runs {running}" in diag.message_primary
    store(conn, "m", "pickle", data)
    assert predict(conn, "m") is not None        # the unedited pickle loads


def test_skops_with_untrusted_types_is_refused_in_the_server(conn):
    from sklearn.preprocessing import FunctionTransformer

    suspicious = sio.dumps(FunctionTransformer(func=os.system))
    untrusted = sio.get_untrusted_types(data=suspicious)
    assert untrusted                              # e.g. ['posix.system']
    store(conn, "m", "skops", suspicious)
    diag = refused(conn, "m")
    assert f"the skops file needs types this loader does not trust: {sorted(untrusted)}" in diag.message_primary
    assert "get_untrusted_types" in diag.message_hint


def test_json_models_need_no_library_version_match(conn):
    value(conn, "SELECT serialisation_demo_train('m', 'json')")
    expected = predict(conn, "m")
    doc = value(conn, "SELECT convert_from(model_data, 'UTF8') FROM serialisation_demo WHERE name = 'm'")
    store(conn, "m", "json", doc.encode(), {"scikit-learn": "0.9.1"})
    assert predict(conn, "m") == expected         # numbers do not depend on scikit-learn's classes


def test_psql_applies_the_file_twice(database_url):
    """Plain SQL, no psql backslash commands: `psql -f` works, and a second time too."""
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    path = pgmlkit.SQL_DIR / SQL
    for _ in range(2):
        done = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database_url, "-f", str(path)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
