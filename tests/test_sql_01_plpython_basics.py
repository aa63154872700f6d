"""sql/01_plpython_basics.sql against the real database: every demo function, with normal input,
NULL input and wrong types, the numpy.float64 -> NUMERIC failure and its fix, and idempotence."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from decimal import Decimal
from importlib import metadata

import psycopg
import pytest

import pgmlkit

SQL = "01_plpython_basics.sql"


@pytest.fixture(autouse=True)
def lesson(apply_sql, conn):
    """The notebook's starting point: customer_data with the talk's three rows, sql/01 applied."""
    apply_sql("02_sample_data.sql", SQL)
    conn.execute("SELECT load_sample_customers(0)")


def value(conn, query, params=None):
    return conn.execute(query, params).fetchone()[0]


def test_applying_the_file_twice_succeeds(apply_sql, conn):
    apply_sql(SQL, SQL)
    assert value(conn, "SELECT plpy_demo_hello('again')").startswith("Hello, again")


def test_psql_applies_the_file_twice(database_url):
    """Plain SQL, no psql backslash commands: `psql -f` works, and a second time too."""
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    path = pgmlkit.SQL_DIR / SQL
    for _ in range(2):
        done = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database_url, "-f", str(path)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


# -- the language and who may use it ------------------------------------------------------------

def test_plpython3u_is_installed_and_untrusted(conn):
    assert conn.execute("SELECT lanpltrusted FROM pg_language WHERE lanname = 'plpython3u'").fetchone() == (False,)


def test_an_ordinary_role_may_create_sql_functions_but_not_plpython_ones(conn):
    conn.execute("SET ROLE plpy_demo_student")
    conn.execute("CREATE OR REPLACE FUNCTION plpy_demo_sandbox.test_one() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for language plpython3u"):
        conn.execute("CREATE FUNCTION plpy_demo_sandbox.test_one_py() RETURNS int LANGUAGE plpython3u AS 'return 1'")
    conn.execute("DROP FUNCTION plpy_demo_sandbox.test_one()")


@pytest.mark.parametrize("call", ["SELECT * FROM plpy_demo_server_identity()",
                                  "SELECT * FROM plpy_demo_server_python()",
                                  "SELECT plpy_demo_count_older_than_unsafe('1')"])
def test_functions_that_reveal_or_inject_are_not_for_public(conn, call):
    conn.execute("SET ROLE plpy_demo_student")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
        conn.execute(call)


def test_server_identity_reads_a_file_of_the_data_directory(conn):
    identity = dict(conn.execute("SELECT item, value FROM plpy_demo_server_identity()").fetchall())
    assert identity["PG_VERSION file"] == str(value(conn, "SELECT current_setting('server_version_num')::int / 10000"))
    assert identity["os_user"]
    assert int(identity["os_pid"]) == value(conn, "SELECT pg_backend_pid()")   # runs inside this very backend


# -- a first function ---------------------------------------------------------------------------

def test_hello_greets_and_names_the_python(conn):
    minor = pgmlkit.kit_settings()["PYTHON_MINOR"]
    assert value(conn, "SELECT plpy_demo_hello('workshop')") == f"Hello, workshop, from Python {minor} inside PostgreSQL"


def test_hello_null_gives_null(conn):
    assert value(conn, "SELECT plpy_demo_hello(NULL)") is None


def test_hello_wrong_type_has_no_matching_function(conn):
    with pytest.raises(psycopg.errors.UndefinedFunction, match=r"plpy_demo_hello\(integer\) does not exist"):
        conn.execute("SELECT plpy_demo_hello(42)")


# -- which Python -------------------------------------------------------------------------------

def test_server_python_is_embedded_and_imports_the_pinned_packages_from_pythonpath(conn):
    server = dict(conn.execute("SELECT item, value FROM plpy_demo_server_python()").fetchall())
    assert server["version"].rsplit(".", 1)[0] == pgmlkit.kit_settings()["PYTHON_MINOR"]
    # Embedded: not this test's interpreter ('' under pg_ctlcluster, which clears PATH; /usr/bin/python3 otherwise).
    assert server["executable"] in ("''", repr("/usr/bin/python3"), repr(f"/usr/bin/python{pgmlkit.kit_settings()['PYTHON_MINOR']}"))
    assert server["executable"] != repr(sys.executable)
    assert server["scikit-learn"] == metadata.version("scikit-learn")
    assert server["numpy"] == metadata.version("numpy")
    pythonpath = [p for p in server["PYTHONPATH"].split(":") if p]
    assert any(server["sklearn imported from"].startswith(p) for p in pythonpath)
    assert server["sys.path[0]"] in pythonpath       # PYTHONPATH comes first on sys.path


# -- plpy.execute and plpy.prepare --------------------------------------------------------------

def test_execute_returns_converted_rows(conn):
    result = dict(conn.execute("SELECT item, value FROM plpy_demo_execute()").fetchall())
    assert result["type(result)"] == "PLyResult"
    assert result["result.nrows()"] == "2"
    assert result["result.colnames()"] == "['id', 'age', 'income', 'credit_score']"
    assert result["result[0]"] == "{'id': 1, 'age': 35, 'income': Decimal('50000'), 'credit_score': 700}"
    assert result["type(result[0]['income'])"] == "Decimal"


def test_unsafe_function_lets_the_caller_write_sql(conn):
    assert value(conn, "SELECT plpy_demo_count_older_than_unsafe('40')") == 1
    assert value(conn, "SELECT plpy_demo_count_older_than_unsafe('99 OR true')") == 3   # the injection


def test_prepared_function_counts_and_cannot_be_injected(conn):
    assert value(conn, "SELECT plpy_demo_count_older_than(40)") == 1
    assert value(conn, "SELECT plpy_demo_count_older_than(20)") == 3
    assert value(conn, "SELECT plpy_demo_count_older_than(99)") == 0
    with pytest.raises(psycopg.errors.InvalidTextRepresentation,
                       match='invalid input syntax for type integer: "99 OR true"'):
        conn.execute("SELECT plpy_demo_count_older_than('99 OR true')")


def test_prepared_function_null_counts_nothing(conn):
    assert value(conn, "SELECT plpy_demo_count_older_than(NULL)") == 0


def test_prepared_function_reuses_its_plan_within_a_session(conn):
    # the same connection calls it twice: the second call uses the plan kept in SD, and data changes are seen
    assert value(conn, "SELECT plpy_demo_count_older_than(40)") == 1
    conn.execute("INSERT INTO customer_data (age, income, credit_score, purchase_amount) VALUES (60, 1, 700, 1)")
    assert value(conn, "SELECT plpy_demo_count_older_than(40)") == 2


def test_prepared_function_wrong_type(conn):
    with pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute("SELECT plpy_demo_count_older_than('40'::text)")


def test_plan_reuse_reports_both_methods(conn):
    rows = conn.execute("SELECT method, lookups, seconds FROM plpy_demo_plan_reuse(50)").fetchall()
    assert [(m, n) for m, n, _ in rows] == [("plpy.execute(sql string)", 50), ("plpy.prepare once, execute", 50)]
    assert all(seconds > 0 for _, _, seconds in rows)


@pytest.mark.parametrize("bad", ["NULL", "0", "-5"])
def test_plan_reuse_refuses_no_lookups_with_a_hint(conn, bad):
    with pytest.raises(psycopg.errors.InternalError_) as error:
        conn.execute(f"SELECT * FROM plpy_demo_plan_reuse({bad})")
    assert "n_lookups must be 1 or more" in error.value.diag.message_primary
    assert "plpy_demo_plan_reuse(5000)" in error.value.diag.message_hint


def test_plan_reuse_on_an_empty_table_says_how_to_fill_it(conn):
    conn.execute("TRUNCATE customer_data")
    with pytest.raises(psycopg.errors.InternalError_) as error:
        conn.execute("SELECT * FROM plpy_demo_plan_reuse(10)")
    assert "customer_data is empty" in error.value.diag.message_primary
    assert "load_sample_customers" in error.value.diag.message_hint


# -- the type mapping ---------------------------------------------------------------------------

@pytest.mark.parametrize("sql_value, python_type, python_repr", [
    ("42", "int", "42"),
    ("42::bigint", "int", "42"),
    ("0.1::float8", "float", "0.1"),
    ("1.10::numeric", "decimal.Decimal", "Decimal('1.10')"),
    ("NULL::integer", "NoneType", "None"),
    ("NULL::numeric", "NoneType", "None"),
    ("ARRAY[1, NULL, 3]", "list", "[1, None, 3]"),
    ("ARRAY[[1, 2], [3, 4]]", "list", "[[1, 2], [3, 4]]"),
    ("ARRAY[1.5]::numeric[]", "list", "[Decimal('1.5')]"),
    ("'\\x00ff'::bytea", "bytes", "b'\\x00\\xff'"),
    ("true", "bool", "True"),
    ("'{\"a\": 1}'::jsonb", "str", "'{\"a\": 1}'"),
    ("date '2025-05-01'", "str", "'2025-05-01'"),
    ("'abc'::text", "str", "'abc'"),
])
def test_py_type_of_and_py_repr_of(conn, sql_value, python_type, python_repr):
    assert conn.execute(f"SELECT py_type_of({sql_value}), py_repr_of({sql_value})").fetchone() == (python_type, python_repr)


def test_py_type_of_untyped_literal_picks_the_text_overload(conn):
    # PostgreSQL prefers text for an untyped literal: '1.5' is a str unless cast
    assert conn.execute("SELECT py_type_of('1.5'), py_type_of('1.5'::numeric)").fetchone() == ("str", "decimal.Decimal")


def test_py_type_of_type_without_overload(conn):
    with pytest.raises(psycopg.errors.UndefinedFunction, match=r"py_type_of\(point\)"):
        conn.execute("SELECT py_type_of(point '(1,2)')")


def test_plpython_refuses_polymorphic_arguments(conn):
    """Why sql/01 creates one overload per type instead of py_type_of(anyelement)."""
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="cannot accept type anyelement"):
        conn.execute("CREATE FUNCTION plpy_demo_poly(v anyelement) RETURNS text LANGUAGE plpython3u AS 'return 1'")


# -- return values ------------------------------------------------------------------------------

def test_numpy_float64_into_numeric_fails_then_the_fix_works(conn):
    try:
        pgmlkit.run_sql_block(SQL, "plpy_demo_mean_first_try", conn)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as error:
            conn.execute("SELECT plpy_demo_mean(ARRAY[1, 2, 3])")
        assert error.value.diag.message_primary == 'invalid input syntax for type numeric: "np.float64(2.0)"'
    finally:
        pgmlkit.run_sql_block(SQL, "plpy_demo_mean", conn)
    assert value(conn, "SELECT plpy_demo_mean(ARRAY[1, 2, 3])") == Decimal("2.0")


def test_the_whole_file_leaves_the_fixed_mean(apply_sql, conn):
    pgmlkit.run_sql_block(SQL, "plpy_demo_mean_first_try", conn)
    apply_sql(SQL)
    assert value(conn, "SELECT plpy_demo_mean(ARRAY[1.5, 2.5])") == Decimal("2.0")


@pytest.mark.parametrize("argument, expected", [
    ("ARRAY[1, 2, 3.5]", Decimal("2.1666666666666665")),
    ("ARRAY[1, NULL, 3]", Decimal("2.0")),          # NULL elements skipped, as avg() does
    ("ARRAY[NULL]::float8[]", None),
    ("'{}'::float8[]", None),                       # no values: NULL, not NaN
    ("NULL", None),
])
def test_mean_follows_avg_for_nulls(conn, argument, expected):
    assert value(conn, f"SELECT plpy_demo_mean({argument})") == expected


def test_mean_wrong_type(conn):
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="malformed array literal"):
        conn.execute("SELECT plpy_demo_mean('not numbers')")


def test_dict_into_jsonb_fails_then_json_dumps_works(conn):
    try:
        pgmlkit.run_sql_block(SQL, "plpy_demo_summary_first_try", conn)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="invalid input syntax for type json"):
            conn.execute("SELECT plpy_demo_summary(ARRAY[1, 2, 3.5])")
    finally:
        pgmlkit.run_sql_block(SQL, "plpy_demo_summary", conn)
    assert json.loads(value(conn, "SELECT plpy_demo_summary(ARRAY[1, 2, 3.5])::text")) == \
        {"n": 3, "mean": pytest.approx(13 / 6), "max": 3.5}


@pytest.mark.parametrize("argument", ["NULL", "'{}'::float8[]", "ARRAY[NULL]::float8[]"])
def test_summary_of_no_values(conn, argument):
    assert value(conn, f"SELECT plpy_demo_summary({argument})") == {"n": 0, "mean": None, "max": None}


def test_summary_skips_null_elements(conn):
    assert value(conn, "SELECT plpy_demo_summary(ARRAY[2, NULL, 4])") == {"n": 2, "mean": 3.0, "max": 4.0}


@pytest.mark.parametrize("text_value, expected", [
    ("true", True), ("false", True), ("no", True), ("0", True), ("", False), (None, None)])
def test_a_string_into_boolean_is_python_truthiness(conn, text_value, expected):
    assert value(conn, "SELECT plpy_demo_to_boolean(%s::text)", [text_value]) is expected


# -- SD and GD ----------------------------------------------------------------------------------

def test_sd_is_per_function_gd_per_session_and_sessions_are_separate():
    with pgmlkit.connect() as a, pgmlkit.connect() as b:
        assert [a.execute("SELECT * FROM plpy_demo_count_calls()").fetchone() for _ in range(3)] == \
            [(1, 1), (2, 2), (3, 3)]
        assert a.execute("SELECT * FROM plpy_demo_peek_calls()").fetchone() == (0, 3)
        assert b.execute("SELECT * FROM plpy_demo_peek_calls()").fetchone() == (0, 0)
        assert b.execute("SELECT * FROM plpy_demo_count_calls()").fetchone() == (1, 1)


# -- messages -----------------------------------------------------------------------------------

def test_check_age_passes_normal_values_and_null(conn):
    assert value(conn, "SELECT plpy_demo_check_age(35)") == 35
    assert value(conn, "SELECT plpy_demo_check_age(NULL)") is None


def test_check_age_notice_reaches_the_client(conn):
    notices = []
    conn.add_notice_handler(lambda notice: notices.append((notice.severity, notice.message_primary)))
    assert value(conn, "SELECT plpy_demo_check_age(130)") == 130
    assert notices == [("NOTICE", "age 130 is unusually high; kept as given")]


def test_check_age_error_has_message_hint_and_sqlstate(conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as error:
        conn.execute("SELECT plpy_demo_check_age(-1)")
    diag = error.value.diag
    assert diag.sqlstate == "22023"
    assert diag.message_primary == "plpy.Error: age must not be negative, got -1"
    assert diag.message_hint == "Pass the age in whole years, e.g. 35."


def test_check_age_wrong_type(conn):
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match='invalid input syntax for type integer: "abc"'):
        conn.execute("SELECT plpy_demo_check_age('abc')")
