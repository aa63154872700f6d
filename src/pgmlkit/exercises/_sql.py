"""Small helpers for exercise checks that take a SQL query as the answer."""
from __future__ import annotations


def rows(query: str) -> list[tuple]:
    """Run the attendee's query on a fresh connection and return all rows."""
    import pgmlkit

    if not isinstance(query, str):
        raise TypeError(f"the answer should be a SQL query as a Python string, got {type(query).__name__}")
    with pgmlkit.connect() as conn:
        return conn.execute(query).fetchall()


def single_value(query: str):
    """The one value of a one-row, one-column query; a clear error otherwise."""
    result = rows(query)
    if len(result) != 1 or len(result[0]) != 1:
        raise ValueError(f"expected one row with one column, got {len(result)} row(s)"
                         + (f" with {len(result[0])} column(s)" if result else ""))
    return result[0][0]
