"""Shared fixtures: a real connection to the kit's database (no mocks), and the sql/ files."""
from __future__ import annotations

import contextlib
import uuid

import psycopg
import pytest

import pgmlkit


@pytest.fixture(scope="session")
def database_url() -> str:
    return pgmlkit.database_url()


@pytest.fixture()
def conn():
    """An autocommit psycopg connection, closed after the test."""
    connection = pgmlkit.connect()
    yield connection
    connection.close()


@pytest.fixture()
def apply_sql(conn):
    """apply_sql('02_sample_data.sql', ...) runs sql/ files in order, as a notebook would."""
    def apply(*names: str) -> None:
        for name in names:
            pgmlkit.run_sql_file(name, conn)
    return apply


@contextlib.contextmanager
def own_database(prefix: str, plpython: bool = True):
    """A new database (a unique name starting with prefix) in the kit's cluster, dropped afterwards:
    for tests that must not see what other tests left. Yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin_url = psycopg.conninfo.make_conninfo(pgmlkit.database_url(), dbname="postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(pgmlkit.database_url(), dbname=name)
    try:
        if plpython:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")     # as provisioning does for the kit's
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
