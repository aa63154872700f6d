"""Shared fixtures: a real connection to the kit's database (no mocks), and the sql/ files."""
from __future__ import annotations

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
