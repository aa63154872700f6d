"""The setup check reports what it must: real server versions agree; a mismatch is named with its fix."""
import subprocess
import sys

from pgmlkit import check


def test_real_stack_agrees_with_pins(conn):
    lines = check.run_checks(conn)
    assert lines, "the check printed nothing"
    assert all(line.ok for line in lines), "\n".join(map(str, lines))


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
