"""Checks for notebook 01 (PL/Python basics)."""
from __future__ import annotations

import re

from . import exercise

# The SQL values of exercise 01.1, exactly as the notebook lists them.
TYPE_QUESTIONS = ("12.5::numeric", "ARRAY[1.5, NULL]::float8[]", "'\\x01ff'::bytea", "'{\"a\": 1}'::jsonb",
                  "NULL::text")


def _type_name(name: str) -> str:
    """'decimal.Decimal', 'Decimal' and "<class 'decimal.Decimal'>" all mean the same; None means NoneType."""
    name = re.sub(r"^<class '(.*)'>$", r"\1", str(name).strip())
    name = name.rsplit(".", 1)[-1]
    return "NoneType" if name == "None" else name


@exercise("01.1")
def python_types(answer):
    import pgmlkit

    if not isinstance(answer, dict):
        return False, f"the answer should be a dict like {{\"12.5::numeric\": \"<type name>\", ...}}, got {type(answer).__name__}."
    missing = [q for q in TYPE_QUESTIONS if q not in answer]
    if missing:
        return False, f"the dict has no entry for {', '.join(missing)} (use the SQL values exactly as written)."
    wrong = []
    with pgmlkit.connect() as conn:        # the truth comes from the server, not from this file
        for question in TYPE_QUESTIONS:
            actual = conn.execute(f"SELECT py_type_of({question})").fetchone()[0]
            given = answer[question]
            if given is Ellipsis or _type_name(given) != _type_name(actual):
                wrong.append(f"{question} (you wrote {given!r})")
    if wrong:
        return False, "not the type PL/Python passes for: " + "; ".join(wrong) + ". Ask the server: SELECT py_type_of(...)."
    return True, ("NUMERIC is a Decimal, arrays are lists (NULL inside is None), bytea is bytes, jsonb is a "
                  "JSON string, and NULL is None.")


@exercise("01.2")
def prepared_function(answer):
    import pgmlkit

    if not isinstance(answer, str) or "plpy_exercise_income_above" not in answer:
        return False, "the answer should be the CREATE OR REPLACE FUNCTION plpy_exercise_income_above(...) statement, as a string."
    with pgmlkit.connect() as conn:
        conn.execute(answer)
        found = conn.execute(
            "SELECT l.lanname, p.prosrc, pg_get_function_result(p.oid) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
            " WHERE p.oid = to_regprocedure('plpy_exercise_income_above(numeric)')").fetchone()
        if found is None:
            return False, "there is no function plpy_exercise_income_above(numeric): check the name and the argument type."
        language, source, result_type = found
        if language != "plpython3u":
            return False, f"the function is written in {language}; write it in plpython3u."
        if result_type != "bigint":
            return False, f"the function returns {result_type}; declare RETURNS bigint."
        if "plpy.prepare" not in source or "$1" not in source:
            return False, "use plpy.prepare(\"... WHERE income > $1\", [\"numeric\"]) and pass the value to execute()."
        if re.search(r"\{\s*min_income|%\s*\(?\s*min_income|format\(\s*min_income|\+\s*str\(\s*min_income", source):
            return False, "min_income is formatted into the SQL text; pass it as a parameter instead."
        for threshold in (0, 40000, 50000, 10**9):
            expected = conn.execute("SELECT count(*) FROM customer_data WHERE income > %s", [threshold]).fetchone()[0]
            got = conn.execute("SELECT plpy_exercise_income_above(%s::numeric)", [threshold]).fetchone()[0]
            if got != expected:
                return False, f"for min_income {threshold} your function returns {got}; customer_data has {expected} such rows."
        got_null = conn.execute("SELECT plpy_exercise_income_above(NULL)").fetchone()[0]
        if got_null != 0:
            return False, f"for a NULL threshold your function returns {got_null}; income > NULL is never true, so 0."
    return True, "a prepared, parameterised query: the value never becomes SQL, and the plan is reused."
