"""Connections and the sql/ files: run them, and show them in a notebook."""
from __future__ import annotations

import re
from pathlib import Path

import psycopg

from .config import SQL_DIR, database_url, sqlalchemy_url


def connect(autocommit: bool = True, **kwargs) -> psycopg.Connection:
    """A psycopg 3 connection to the kit's database. autocommit, as psql and %sql behave."""
    try:
        return psycopg.connect(database_url(), autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as error:
        raise ConnectionError(
            f"Cannot connect to the kit's database at {database_url()}: {str(error).strip()}\n"
            "Fix: start it with `make db` in the kit's folder (or correct DATABASE_URL)."
        ) from None


def sql_path(name: str) -> Path:
    path = SQL_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"sql/{name} does not exist; the files are: {sorted(p.name for p in SQL_DIR.glob('*.sql'))}")
    return path


def run_sql_file(name: str, conn: psycopg.Connection | None = None) -> None:
    """Execute sql/<name> in one round trip, exactly as `psql -f sql/<name>` would.

    psycopg sends a parameterless query with the simple protocol, so a whole file of
    statements runs as written: `:name` inside a PL/Python body stays Python, not a bind
    parameter (which is why the kit does not create functions through %sql).
    """
    text = sql_path(name).read_text()
    owned = conn is None
    conn = conn or connect()
    try:
        conn.execute(text)
    finally:
        if owned:
            conn.close()


_BLOCK = re.compile(r"^-- @block (\S+)\s*$", re.MULTILINE)


def sql_block(name: str, block: str | None = None) -> str:
    """The text of sql/<name>, or of one `-- @block <block>` section of it (up to the next one)."""
    text = sql_path(name).read_text()
    if block is None:
        return text.strip()
    marks = list(_BLOCK.finditer(text))
    for i, mark in enumerate(marks):
        if mark.group(1) == block:
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            return text[mark.end():end].strip()
    raise KeyError(f"sql/{name} has no '-- @block {block}'; it has: {[m.group(1) for m in marks]}")


def show_sql(name: str, block: str | None = None):
    """Display sql/<name> (or one block of it) as highlighted SQL in the notebook."""
    from IPython.display import Markdown

    title = f"`sql/{name}`" + (f" — `{block}`" if block else "")
    return Markdown(f"{title}\n\n```sql\n{sql_block(name, block)}\n```")


def sql_engine():
    """A SQLAlchemy engine for JupySQL (`%sql kit_engine`), checked so a stopped database says how to fix it."""
    import sqlalchemy

    connect().close()  # fails with a clear message if the database is down
    return sqlalchemy.create_engine(sqlalchemy_url())


def run_sql_block(name: str, block: str, conn: psycopg.Connection | None = None) -> None:
    """Execute one `-- @block` section of sql/<name> (e.g. the talk's version of a function,
    shown failing before the file's fixed version replaces it)."""
    owned = conn is None
    conn = conn or connect()
    try:
        conn.execute(sql_block(name, block))
    finally:
        if owned:
            conn.close()
