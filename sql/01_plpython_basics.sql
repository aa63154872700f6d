-- 01 — PL/Python basics: the language, a first function, talking to the database, which Python
-- the server runs, the type mapping that bites, session state, and messages.
-- Apply with: psql "$DATABASE_URL" -f sql/01_plpython_basics.sql   (idempotent; needs sql/02 first,
--             for the talk's customer_data table)
-- Every object here is a small demo, named plpy_demo_* (or py_type_of / py_repr_of), so the lesson
-- can be replayed from psql and dropped without touching the kit's real objects.

-- @block extension
-- plpython3u is "untrusted" (the u): its code runs unrestricted, as the operating-system user of
-- the server. So only a superuser may CREATE EXTENSION it, and only a superuser may create
-- functions in it. Provisioning already did this; here it is a no-op.
CREATE EXTENSION IF NOT EXISTS plpython3u;

-- @block plpy_demo_student
-- An ordinary role with a schema of its own, to show that what is refused is the language,
-- not the right to create functions. NOLOGIN: nobody connects as it; a superuser uses SET ROLE.
-- Roles belong to the whole cluster, so two sessions may race to create it: tolerate that.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'plpy_demo_student') THEN
        CREATE ROLE plpy_demo_student NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;                                   -- another session created it first
END;
$$;
CREATE SCHEMA IF NOT EXISTS plpy_demo_sandbox AUTHORIZATION plpy_demo_student;

-- @block plpy_demo_hello
-- A first function. Arguments are Python variables named like the SQL parameters; the body is
-- the body of a Python function, so `return` sends the result back to SQL.
CREATE OR REPLACE FUNCTION plpy_demo_hello(name text)
RETURNS text
LANGUAGE plpython3u IMMUTABLE
AS $$
import sys
if name is None:                    # SQL NULL arrives as None; decide what it means
    return None                     # (or declare the function STRICT: NULL in, NULL out, body skipped)
return f"Hello, {name}, from Python {sys.version_info.major}.{sys.version_info.minor} inside PostgreSQL"
$$;

-- @block plpy_demo_server_identity
-- What "untrusted" means in practice: this code runs as the server's OS user, in the server's
-- data directory, and may read (or write, or delete) whatever that user may. Here it only reads
-- the one-line PG_VERSION file of the data directory. Not for PUBLIC: it reveals server internals.
CREATE OR REPLACE FUNCTION plpy_demo_server_identity()
RETURNS TABLE (item text, value text)
LANGUAGE plpython3u
AS $$
import os, pwd
with open("PG_VERSION") as f:                  # relative path: the cwd is the data directory
    pg_version_file = f.read().strip()
return [
    ("os_user", pwd.getpwuid(os.getuid()).pw_name),
    ("os_pid", str(os.getpid())),                  # one backend process per connection
    ("working_directory", os.getcwd()),
    ("PG_VERSION file", pg_version_file),
]
$$;
REVOKE EXECUTE ON FUNCTION plpy_demo_server_identity() FROM PUBLIC;

-- @block plpy_demo_server_python
-- Which Python the server embeds and where it imports from. PL/Python is a library loaded into
-- each backend, not a `python` process: sys.executable is empty, and packages come from sys.path,
-- which PYTHONPATH (set in the server's environment by provisioning) extends with the kit's
-- server-side virtual environment.
CREATE OR REPLACE FUNCTION plpy_demo_server_python()
RETURNS TABLE (item text, value text)
LANGUAGE plpython3u
AS $$
import os, sys
import numpy, sklearn
rows = [
    ("version", "%d.%d.%d" % sys.version_info[:3]),
    ("executable", repr(sys.executable)),
    ("prefix", sys.prefix),
    ("PYTHONPATH", os.environ.get("PYTHONPATH", "(not set)")),
]
rows += [(f"sys.path[{i}]", entry) for i, entry in enumerate(sys.path)]
rows += [("scikit-learn", sklearn.__version__), ("sklearn imported from", os.path.dirname(sklearn.__file__)),
         ("numpy", numpy.__version__), ("numpy imported from", os.path.dirname(numpy.__file__))]
return rows
$$;
REVOKE EXECUTE ON FUNCTION plpy_demo_server_python() FROM PUBLIC;

-- @block plpy_demo_execute
-- plpy.execute runs SQL and returns a PLyResult: a list of rows (dicts keyed by column name)
-- plus nrows(), colnames(), coltypes(). Each value is already converted to a Python type.
CREATE OR REPLACE FUNCTION plpy_demo_execute()
RETURNS TABLE (item text, value text)
LANGUAGE plpython3u
AS $$
result = plpy.execute("SELECT id, age, income, credit_score FROM customer_data ORDER BY id LIMIT 2")
return [
    ("type(result)", type(result).__name__),
    ("result.nrows()", str(result.nrows())),
    ("result.colnames()", str(result.colnames())),
    ("result[0]", repr(result[0])),
    ("type(result[0]['income'])", type(result[0]["income"]).__name__),
]
$$;

-- @block plpy_demo_count_older_than_unsafe
-- DON'T: the argument is pasted into the SQL text, so the caller writes SQL. Passing
-- '99 OR true' counts every row. Kept only to show the problem; no one else may call it.
CREATE OR REPLACE FUNCTION plpy_demo_count_older_than_unsafe(min_age text)
RETURNS bigint
LANGUAGE plpython3u
AS $$
return plpy.execute(f"SELECT count(*) AS n FROM customer_data WHERE age > {min_age}")[0]["n"]
$$;
REVOKE EXECUTE ON FUNCTION plpy_demo_count_older_than_unsafe(text) FROM PUBLIC;

-- @block plpy_demo_count_older_than
-- DO: plpy.prepare with $1 and a declared type. The value travels separately from the SQL text,
-- so it can never become SQL; and the plan, kept in SD (this function's private dict, alive for
-- the session), is parsed and planned once instead of on every call.
CREATE OR REPLACE FUNCTION plpy_demo_count_older_than(min_age integer)
RETURNS bigint
LANGUAGE plpython3u STABLE
AS $$
if "plan" not in SD:
    SD["plan"] = plpy.prepare("SELECT count(*) AS n FROM customer_data WHERE age > $1", ["integer"])
return SD["plan"].execute([min_age])[0]["n"]      # min_age None -> NULL -> age > NULL -> 0 rows
$$;

-- @block plpy_demo_plan_reuse
-- The cost of parsing and planning, measured: n point lookups by primary key, first with the
-- value formatted into a new SQL string each time, then through one prepared plan.
CREATE OR REPLACE FUNCTION plpy_demo_plan_reuse(n_lookups integer DEFAULT 5000)
RETURNS TABLE (method text, lookups integer, seconds double precision)
LANGUAGE plpython3u
AS $$
import time
if n_lookups is None or n_lookups < 1:
    plpy.error(f"n_lookups must be 1 or more, got {n_lookups}", hint="For example: SELECT * FROM plpy_demo_plan_reuse(5000);")
ids = [r["id"] for r in plpy.execute("SELECT id FROM customer_data ORDER BY id")]
if not ids:
    plpy.error("customer_data is empty", hint="Load rows first: SELECT load_sample_customers(0);")

start = time.perf_counter()
for i in range(n_lookups):
    plpy.execute(f"SELECT age, income FROM customer_data WHERE id = {ids[i % len(ids)]}")
unprepared = time.perf_counter() - start

plan = plpy.prepare("SELECT age, income FROM customer_data WHERE id = $1", ["integer"])
start = time.perf_counter()
for i in range(n_lookups):
    plan.execute([ids[i % len(ids)]])
prepared = time.perf_counter() - start
return [("plpy.execute(sql string)", n_lookups, unprepared), ("plpy.prepare once, execute", n_lookups, prepared)]
$$;

-- @block py_type_of
-- Which Python type PL/Python hands a function for a SQL value, and its repr(). PL/Python takes
-- no polymorphic arguments (anyelement is refused), so the loop creates one overload per SQL
-- type, all with the same body; the call picks the overload by the argument's type, e.g.
-- py_type_of(1.5::numeric) or py_type_of(ARRAY[1, 2]).
DO $$
DECLARE
    sql_type text;
BEGIN
    FOREACH sql_type IN ARRAY ARRAY[
        'smallint', 'integer', 'bigint', 'real', 'double precision', 'numeric', 'boolean', 'text',
        'bytea', 'date', 'timestamp with time zone', 'interval', 'uuid', 'json', 'jsonb',
        'integer[]', 'double precision[]', 'numeric[]', 'text[]']
    LOOP
        EXECUTE format($f$
            CREATE OR REPLACE FUNCTION py_type_of(value %s)
            RETURNS text
            LANGUAGE plpython3u IMMUTABLE
            AS $body$
t = type(value)
return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"
$body$;
            CREATE OR REPLACE FUNCTION py_repr_of(value %s)
            RETURNS text
            LANGUAGE plpython3u IMMUTABLE
            AS $body$
return repr(value)
$body$;$f$, sql_type, sql_type);
    END LOOP;
END;
$$;

-- @block plpy_demo_mean_first_try
-- A first try that fails on numpy 2: np.mean returns numpy.float64, and PL/Python turns a float
-- it returns into text with repr() before handing it to numeric's input function. numpy 2's
-- repr is "np.float64(2.0)", which is not a number:
--   ERROR: invalid input syntax for type numeric: "np.float64(2.0)"
CREATE OR REPLACE FUNCTION plpy_demo_mean(vals double precision[])
RETURNS numeric
LANGUAGE plpython3u IMMUTABLE
AS $$
import numpy as np
return np.mean(vals)
$$;

-- @block plpy_demo_mean
-- The fix: return a plain Python float. NULL handling follows SQL's avg(): NULL elements are
-- skipped, and no values (NULL or empty array) gives NULL rather than numpy's NaN and a warning.
CREATE OR REPLACE FUNCTION plpy_demo_mean(vals double precision[])
RETURNS numeric
LANGUAGE plpython3u IMMUTABLE
AS $$
import numpy as np
present = [v for v in (vals or []) if v is not None]
if not present:
    return None
return float(np.mean(present))          # numpy.float64 -> float: repr() is now "2.0"
$$;

-- @block plpy_demo_summary_first_try
-- Another return value that bites: a dict returned into jsonb is turned into text with str(),
-- which gives Python's {'n': 3}, not JSON:  ERROR: invalid input syntax for type json
CREATE OR REPLACE FUNCTION plpy_demo_summary(vals double precision[])
RETURNS jsonb
LANGUAGE plpython3u IMMUTABLE
AS $$
import numpy as np
return {"n": len(vals), "mean": np.mean(vals), "max": np.max(vals)}
$$;

-- @block plpy_demo_summary
-- The fix: json.dumps, with numpy scalars made plain floats (json cannot encode numpy.float64
-- either). The jsonb_plpython3u extension (a TRANSFORM) is the other way; json.dumps works everywhere.
CREATE OR REPLACE FUNCTION plpy_demo_summary(vals double precision[])
RETURNS jsonb
LANGUAGE plpython3u IMMUTABLE
AS $$
import json
import numpy as np
present = np.array([v for v in (vals or []) if v is not None], dtype=np.float64)
if present.size == 0:
    return json.dumps({"n": 0, "mean": None, "max": None})
return json.dumps({"n": int(present.size), "mean": float(present.mean()), "max": float(present.max())})
$$;

-- @block plpy_demo_to_boolean
-- A returned value is converted by Python truthiness into boolean: the string 'false' is a
-- non-empty string, so it becomes true. Return real bools (value == "true"), not strings.
CREATE OR REPLACE FUNCTION plpy_demo_to_boolean(value text)
RETURNS boolean
LANGUAGE plpython3u IMMUTABLE
AS $$
return value
$$;

-- @block plpy_demo_session_state
-- SD is private to one function, GD is shared by every PL/Python function; both live as long as
-- the connection (one backend process, one interpreter). Notebook 05 caches models in them.
CREATE OR REPLACE FUNCTION plpy_demo_count_calls()
RETURNS TABLE (sd_calls integer, gd_calls integer)
LANGUAGE plpython3u
AS $$
SD["calls"] = SD.get("calls", 0) + 1
GD["plpy_demo_calls"] = GD.get("plpy_demo_calls", 0) + 1
return [(SD["calls"], GD["plpy_demo_calls"])]
$$;

CREATE OR REPLACE FUNCTION plpy_demo_peek_calls()
RETURNS TABLE (sd_calls integer, gd_calls integer)
LANGUAGE plpython3u
AS $$
# This function's SD is its own (empty); GD is the one plpy_demo_count_calls writes.
return [(SD.get("calls", 0), GD.get("plpy_demo_calls", 0))]
$$;

-- @block plpy_demo_check_age
-- Messages: plpy.notice reaches the client and the work goes on; plpy.error aborts the statement
-- (and its transaction) with a message naming the problem, a hint naming the fix, and an
-- SQLSTATE a client can catch (22023 = invalid_parameter_value).
CREATE OR REPLACE FUNCTION plpy_demo_check_age(age integer)
RETURNS integer
LANGUAGE plpython3u IMMUTABLE
AS $$
if age is None:
    return None
if age < 0:
    plpy.error(f"age must not be negative, got {age}", hint="Pass the age in whole years, e.g. 35.",
               sqlstate="22023")
if age > 120:
    plpy.notice(f"age {age} is unusually high; kept as given")
return age
$$;
