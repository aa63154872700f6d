"""Provisioning fails clearly: one `[FAIL]` line naming the cause, a `Fix:` line, never a traceback.

Driven through the real scripts (scripts/db.sh, scripts/native_db.sh) against real servers; nothing
of the kit's own cluster is touched: each case uses another cluster name, a port of its own, a
throw-away database or a throw-away cluster, and removes what it made.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

import pgmlkit

ROOT = Path(__file__).resolve().parents[1]
KIT = pgmlkit.kit_settings()
PG_BIN = Path(f"/usr/lib/postgresql/{KIT['PG_MAJOR']}/bin")
AS_ROOT = os.geteuid() == 0
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def kit_environment(**overrides: str) -> dict[str, str]:
    """This process's environment without the kit's settings (so kit.env applies), plus overrides."""
    env = {k: v for k, v in os.environ.items()
           if k not in KIT and k not in ("DATABASE_URL", "KIT_BACKEND", "PYTHONPATH")}
    env.update(overrides)
    return env


def run(command: list[str], **overrides: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=ROOT, env=kit_environment(**overrides),
                            capture_output=True, text=True, timeout=180)
    result.stderr = ANSI.sub("", result.stderr)
    return result


def assert_one_clear_failure(result: subprocess.CompletedProcess, cause: list[str], fix: list[str]) -> str:
    """Exit status 1, exactly one [FAIL] whose message names the cause and whose Fix: line names the fix."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    assert result.stderr.count("[FAIL]") == 1, result.stderr
    message = result.stderr[result.stderr.index("[FAIL]"):]
    cause_text, _, fix_text = message.partition("Fix:")
    assert fix_text.strip(), f"no Fix: line in {message!r}"
    for phrase in cause:
        assert phrase in cause_text, f"{phrase!r} not in the cause: {cause_text!r}"
    for phrase in fix:
        assert phrase in fix_text, f"{phrase!r} not in the fix: {fix_text!r}"
    return message


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker_engine_answers() -> bool:
    return bool(shutil.which("docker")) and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def server_venv() -> Path:
    """Where scripts/native_db.sh keeps the server-side environment for this user."""
    if AS_ROOT:
        return Path("/var/lib/pg-ml-kit") / KIT["KIT_CLUSTER"] / f"server-venv-py{KIT['PYTHON_MINOR']}"
    return ROOT / ".kit" / f"{KIT['KIT_CLUSTER']}-server-venv-py{KIT['PYTHON_MINOR']}"


needs_native = pytest.mark.skipif(
    not (PG_BIN / "initdb").exists() or not (server_venv() / ".kit-pins").exists(),
    reason="the native PostgreSQL stack is not provisioned here (make db with KIT_BACKEND=native)")


# ------------------------------------------------------------------------------------- port taken

@needs_native
def test_port_taken_fails_before_creating_anything():
    cluster = "pgmlkit_porttest"
    created = (lambda: Path(f"/etc/postgresql/{KIT['PG_MAJOR']}/{cluster}").exists()
               or Path(f"/var/lib/postgresql/{KIT['PG_MAJOR']}/{cluster}").exists()) if AS_ROOT \
        else (lambda: (ROOT / ".kit" / cluster).exists())
    assert not created(), f"a cluster {cluster} is left over from an earlier run"
    with closing(socket.socket()) as listener:   # someone else's server on the port
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = run(["scripts/native_db.sh", "up"], KIT_PORT=str(port), KIT_CLUSTER=cluster)
    assert_one_clear_failure(result, cause=[f"Port {port}", "already taken"], fix=["KIT_PORT=", "ss -ltnp"])
    assert not created(), "a cluster was created although the port was taken"


# ------------------------------------------------------------------------ no Docker, not Debian

def test_no_docker_and_not_debian(tmp_path):
    """No Docker engine, PostgreSQL packages absent and no apt-get: the message offers Docker or an external server."""
    if docker_engine_answers():
        pytest.skip("a Docker engine answers here, so make db would use it")
    # A PATH with every command of this machine except apt: what a Fedora or macOS user has.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep) + ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]:
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = bin_dir / entry.name
            if entry.name not in ("apt-get", "apt") and not link.exists() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    # A PostgreSQL major no Debian ships, so the packages are missing and apt-get would be needed.
    result = run(["scripts/db.sh", "up"], PATH=str(bin_dir), PG_MAJOR="99",
                 KIT_PORT=str(free_port()), KIT_CLUSTER="pgmlkit_nodebian")
    assert_one_clear_failure(result, cause=["No Docker engine", "not Debian/Ubuntu", "PostgreSQL 99"],
                             fix=["Docker", "KIT_BACKEND=external DATABASE_URL="])


def test_docker_forced_without_an_engine():
    if docker_engine_answers():
        pytest.skip("a Docker engine answers here")
    result = run(["scripts/db.sh", "up"], KIT_BACKEND="docker")
    assert_one_clear_failure(result, cause=["no Docker engine answers"], fix=["Start Docker", "KIT_BACKEND=native"])


# ----------------------------------------------------------------------------- not reachable

def test_database_not_reachable():
    url = f"postgresql://{KIT['KIT_USER']}:{KIT['KIT_PASSWORD']}@127.0.0.1:{free_port()}/{KIT['KIT_DB']}"
    result = run(["scripts/db.sh", "up"], KIT_BACKEND="external", DATABASE_URL=url)
    assert_one_clear_failure(result, cause=[f"Cannot connect to {url}", "Connection refused"],
                             fix=["make db", "DATABASE_URL"])


# ------------------------------------------------------------------------- plpython3u missing

@contextmanager
def scratch_database(suffix: str):
    """A database beside this test's own (same server, name derived from it), dropped afterwards."""
    url = pgmlkit.database_url()
    name = f"{psycopg.conninfo.conninfo_to_dict(url)['dbname']}_{suffix}"
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')   # template0: surely no plpython3u
    try:
        yield urlsplit(url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_plpython_missing():
    with scratch_database("t_noplpython") as url:
        result = run(["scripts/db.sh", "up"], KIT_BACKEND="external", DATABASE_URL=url)
    assert_one_clear_failure(result, cause=["plpython3u is missing", url],
                             fix=["make db-reset", "CREATE EXTENSION plpython3u"])


# ---------------------------------------------------------------- server cannot import sklearn

@contextmanager
def cluster_without_server_packages():
    """A throw-away cluster started WITHOUT the kit's PYTHONPATH, bootstrapped by scripts/bootstrap.sql."""
    work = Path(tempfile.mkdtemp(prefix="pgmlkit-noserverpkgs-"))   # short: unix socket paths are limited
    as_owner: list[str] = []
    if AS_ROOT:   # PostgreSQL refuses to run as root: the cluster belongs to postgres, as the kit's does
        shutil.chown(work, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = work / "data", free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"LC_ALL": "C.UTF-8"}

    def owner(*command: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        # cwd=/ and SQL on stdin: the postgres user may not enter the clone (root's home, mktemp -d).
        result = subprocess.run([*as_owner, *command], env=env, capture_output=True, text=True, timeout=120,
                                cwd="/", input=stdin)
        assert result.returncode == 0 or not check, f"{command[0]} failed: {result.stdout}{result.stderr}"
        return result

    owner(str(PG_BIN / "initdb"), "-D", str(data), "--auth-local=peer", "--auth-host=scram-sha-256",
          "--encoding=UTF8", "--locale=C.UTF-8")
    try:
        owner(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(work / "log"), "-w", "start",
              "-o", f"-p {port} -k {work} -c listen_addresses=localhost")
        owner(str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(work), "-p", str(port), "-d", "postgres",
              "-v", f"kit_user={KIT['KIT_USER']}", "-v", f"kit_password={KIT['KIT_PASSWORD']}",
              "-v", f"kit_db={KIT['KIT_DB']}", "-f", "-", stdin=(ROOT / "scripts/bootstrap.sql").read_text())
        yield f"postgresql://{KIT['KIT_USER']}:{KIT['KIT_PASSWORD']}@localhost:{port}/{KIT['KIT_DB']}"
    finally:
        owner(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason=f"PostgreSQL {KIT['PG_MAJOR']} server binaries not installed")
def test_server_cannot_import_scikit_learn():
    probe = subprocess.run([f"/usr/bin/python{KIT['PYTHON_MINOR']}", "-c", "import sklearn"],
                           env=kit_environment(), capture_output=True)
    if probe.returncode == 0:
        pytest.skip("the system Python itself has scikit-learn, so PL/Python imports it without the kit's environment")
    with cluster_without_server_packages() as url:
        result = run(["scripts/db.sh", "up"], KIT_BACKEND="external", DATABASE_URL=url)
    assert_one_clear_failure(result, cause=["cannot import scikit-learn", "ModuleNotFoundError", "sklearn"],
                             fix=["make db-destroy && make db", "requirements/server.txt"])


# ------------------------------------------------------------------------------- the good case

def test_db_up_prints_the_url_last():
    """`scripts/db.sh up` and `make db` end their standard output with the URL, for scripts to capture."""
    url = pgmlkit.database_url()
    commands = [["scripts/db.sh", "up"]] + ([["make", "--no-print-directory", "db"]] if shutil.which("make") else [])
    for command in commands:
        result = run(command, KIT_BACKEND="external", DATABASE_URL=url)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == url, result.stdout
        assert "[FAIL]" not in result.stderr and "Database ready (external)" in result.stderr
    assert run(["scripts/db.sh", "url"], DATABASE_URL=url).stdout.strip() == url
