"""PgBouncer in front of the kit's database, and a connection-churn workload to measure what it changes.

A PL/Python backend pays its cold start (import scikit-learn, load the model) once per *server*
connection. A client that opens a new connection per request therefore pays it per request — unless a
pooler keeps a few server connections open and hands them to the clients in turn:

    with PgBouncer(pool_size=2) as bouncer:            # Debian's pgbouncer, transaction pooling, a free port
        pooled = churn(bouncer.url, "SELECT ml_predict('purchase_rf', ARRAY[35, 50000, 700])", requests=20)
    direct = churn(pgmlkit.database_url(), ..., requests=5)
    # each: {"seconds": [per request, connect included], "backends": how many server processes served them}

The pooler runs only while the `with` block does, on 127.0.0.1 and a free port, from a temporary folder.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .config import database_url

DEFAULT_PGBOUNCER = "/usr/sbin/pgbouncer"            # Debian's package; KIT_PGBOUNCER names another


class PoolerError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgBouncer:
    """Debian's pgbouncer in transaction mode: at most `pool_size` server connections for any number of clients."""

    def __init__(self, pool_size: int = 2, target_url: str | None = None):
        self.pool_size = pool_size
        self.target = conninfo_to_dict(target_url or database_url())
        self.port = _free_port()
        self.url = make_conninfo(target_url or database_url(), host="127.0.0.1", port=str(self.port))
        self._dir: Path | None = None
        self._process: subprocess.Popen | None = None

    def _config(self) -> str:
        t = self.target
        host = t.get("host", "localhost")
        server = " ".join(f"{key}={value}" for key, value in (
            ("host", "127.0.0.1" if host == "localhost" else host), ("port", t.get("port", "5432")),
            ("dbname", t["dbname"]), ("user", t["user"]), ("password", t.get("password", ""))) if value)
        # auth_type=any: clients are not authenticated by the pooler (it listens on 127.0.0.1 only, for the
        # length of a measurement); every server connection logs in as the kit's user.
        return "\n".join([
            "[databases]", f"{t['dbname']} = {server}", "",
            "[pgbouncer]", "listen_addr = 127.0.0.1", f"listen_port = {self.port}", "unix_socket_dir =",
            "auth_type = any", "pool_mode = transaction", f"default_pool_size = {self.pool_size}",
            "min_pool_size = 0", "max_client_conn = 200",
            f"logfile = {self._dir / 'pgbouncer.log'}", f"pidfile = {self._dir / 'pgbouncer.pid'}", ""])

    def __enter__(self) -> "PgBouncer":
        binary = os.environ.get("KIT_PGBOUNCER", DEFAULT_PGBOUNCER)
        if not os.access(binary, os.X_OK):
            raise PoolerError(f"PgBouncer is not installed ({binary} is missing). "
                              "Fix: `make db` installs it on Debian/Ubuntu (or: sudo apt-get install pgbouncer); "
                              "elsewhere point KIT_PGBOUNCER at a pgbouncer binary.")
        self._dir = Path(tempfile.mkdtemp(prefix="pgmlkit-pgbouncer-"))
        (self._dir / "pgbouncer.ini").write_text(self._config())
        command = [binary, str(self._dir / "pgbouncer.ini")]
        if os.geteuid() == 0:                      # pgbouncer refuses to run as root
            postgres = pwd.getpwnam("postgres")
            os.chown(self._dir, postgres.pw_uid, postgres.pw_gid)
            os.chmod(self._dir / "pgbouncer.ini", 0o644)
            command = ["runuser", "-u", "postgres", "--", *command]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.time() > deadline:
                    log = self.log()
                    self.__exit__(None, None, None)
                    raise PoolerError(f"pgbouncer did not start on 127.0.0.1:{self.port}:\n{log}") from None
                time.sleep(0.1)

    def log(self) -> str:
        path = self._dir / "pgbouncer.log" if self._dir else None
        text = path.read_text() if path and path.exists() else ""
        if self._process and self._process.poll() is not None and self._process.stderr:
            text += self._process.stderr.read()
        return text[-3000:]

    def __exit__(self, *exc) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


def churn(url: str, sql: str, requests: int) -> dict:
    """`requests` requests, each on a brand-new client connection: connect, run `sql`, disconnect.
    Returns the seconds of each request (connect included) and how many server backends served them."""
    seconds, backends = [], set()
    for _ in range(requests):
        started = time.perf_counter()
        # prepare_threshold=None: no server-side prepared statements, which transaction pooling cannot follow
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
            conn.execute(sql).fetchall()
            backends.add(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        seconds.append(time.perf_counter() - started)
    return {"seconds": seconds, "backends": len(backends)}
