"""pgmlkit.pooler: Debian's PgBouncer started for a measurement, and the churn workload (notebook 08, make bench)."""
from __future__ import annotations

import socket

import psycopg
import pytest

import pgmlkit
from pgmlkit.pooler import PgBouncer, PoolerError, churn


def test_requests_through_pgbouncer_reach_the_kits_database_on_at_most_its_pool():
    direct = churn(pgmlkit.database_url(), "SELECT 1", requests=3)
    assert direct["backends"] == 3 and len(direct["seconds"]) == 3       # a new backend per connection
    with PgBouncer(pool_size=2) as bouncer:
        with psycopg.connect(bouncer.url, autocommit=True, prepare_threshold=None) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == \
                psycopg.conninfo.conninfo_to_dict(pgmlkit.database_url())["dbname"]
        pooled = churn(bouncer.url, "SELECT 1", requests=12)
        port = bouncer.port
    assert len(pooled["seconds"]) == 12 and 1 <= pooled["backends"] <= 2
    with pytest.raises(OSError):                                        # stopped with the block
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_missing_pgbouncer_names_the_fix(monkeypatch):
    monkeypatch.setenv("KIT_PGBOUNCER", "/nonexistent/pgbouncer")
    with pytest.raises(PoolerError, match=r"PgBouncer is not installed .*make db"):
        with PgBouncer():
            pass
