"""The setup check reports what it must: real server versions agree; a mismatch is named with its fix;
a model version the verified loader would refuse is reported at set-up."""
import pickle
import subprocess
import sys

import psycopg
import pytest

import pgmlkit
from conftest import own_database
from pgmlkit import check


def test_real_stack_agrees_with_pins(conn):
    # The registry's line is tested on a database of its own below: this one holds what other tests left.
    lines = [line for line in check.run_checks(conn) if not line.text.startswith("model registry")]
    assert lines, "the check printed nothing"
    assert all(line.ok for line in lines), "\n".join(map(str, lines))


@pytest.fixture()
def scratch_database():
    with own_database("test_check") as url, psycopg.connect(url, autocommit=True) as conn:
        yield conn


def test_a_version_the_loader_would_refuse_is_reported(scratch_database):
    conn = scratch_database
    assert check.registry_signatures(conn) == [], "no registry yet (before sql/04): nothing to report"
    for name in ("02_sample_data.sql", "04_training.sql"):
        pgmlkit.run_sql_file(name, conn)
    conn.execute("SELECT load_sample_customers(500, 42)")
    conn.execute("SELECT train_purchase_model()")
    [line] = check.registry_signatures(conn)
    assert line.ok and "every one signed" in line.text, line

    planted = pickle.dumps({"not": "a model"})
    with conn.transaction():           # written around the training path, as an attacker with table access would
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("INSERT INTO ml_model_versions (model_name, version, model_data, model_sha256, algorithm, features,"
                     "                               library_versions, source)"
                     " SELECT 'planted', 1, %s, encode(sha256(%s), 'hex'), algorithm, features, library_versions, source"
                     "   FROM ml_model_versions WHERE model_name = 'purchase_predictor'", [planted, planted])
        conn.execute("UPDATE ml_model_versions SET model_data = %s, model_sha256 = encode(sha256(%s), 'hex')"
                     " WHERE model_name = 'purchase_predictor'", [planted, planted])
    [line] = check.registry_signatures(conn)
    assert not line.ok, line
    assert "2 of 2 version(s)" in line.text and "planted v1: unsigned" in line.text
    assert "purchase_predictor v1: mismatch" in line.text
    assert "train_purchase_model" in line.fix


def test_server_reports_its_python_and_packages(conn, apply_sql):
    apply_sql("00_setup_check.sql")
    env = conn.execute("SELECT kit_server_environment()").fetchone()[0]
    assert env["python"].startswith(check.kit_settings()["PYTHON_MINOR"] + ".")
    assert env["packages"]["scikit-learn"] == check.pinned_versions()["scikit-learn"]
    assert any("site-packages" in p for p in env["sys_path"]), env["sys_path"]


def _environments():
    pins = check.pinned_versions()
    packages = {name: pins[name] for name in check.CHECKED_PACKAGES}
    return {"python": "3.11.2", "packages": dict(packages)}, {"python": "3.11.7", "packages": dict(packages)}, pins


def test_matching_versions_pass():
    server, client, pins = _environments()
    assert all(line.ok for line in check.compare(server, client, pins, "3.11"))


def test_server_package_mismatch_is_reported_with_fix():
    server, client, pins = _environments()
    server["packages"]["scikit-learn"] = "1.8.0"
    failed = [line for line in check.compare(server, client, pins, "3.11") if not line.ok]
    assert len(failed) == 1
    text = str(failed[0])
    assert text.startswith("[FAIL] scikit-learn: server has 1.8.0, pin is " + pins["scikit-learn"])
    assert "Fix:" in text and "make db" in text


def test_kernel_package_mismatch_and_missing_package_are_reported():
    server, client, pins = _environments()
    client["packages"]["numpy"] = "1.26.4"
    server["packages"]["pandas"] = None
    failed = {str(line).splitlines()[0] for line in check.compare(server, client, pins, "3.11") if not line.ok}
    assert "[FAIL] numpy: kernel has 1.26.4, pin is " + pins["numpy"] in failed
    assert "[FAIL] pandas: server has nothing, pin is " + pins["pandas"] in failed


def test_python_minor_mismatch_is_reported():
    server, client, pins = _environments()
    server["python"] = "3.13.1"
    failed = [line for line in check.compare(server, client, pins, "3.11") if not line.ok]
    assert [str(line).splitlines()[0] for line in failed] == ["[FAIL] PL/Python runs Python 3.13 (kit.env pins 3.11)"]


def test_unreachable_database_gives_one_clear_line():
    result = subprocess.run([sys.executable, "-m", "pgmlkit.check"], capture_output=True, text=True,
                            env={"DATABASE_URL": "postgresql://nobody:x@127.0.0.1:1/none", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "[FAIL] cannot connect to postgresql://nobody:x@127.0.0.1:1/none" in result.stdout
    assert "make db" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
