"""No path unpickles an unverified model (issue 11).

1. A scan of sql/ (and of the server package) for deserialisation calls outside the one loader.
2. The same in the database: after applying every sql/ file, no function body deserialises.
3. A planted pickle, with its sha256 recomputed and the triggers bypassed, in every bytea column:
   every function that reads a model, called as the superuser, ml_app and ml_trainer, refuses it
   and the canary (a file the pickle would create) never appears.
4. Least privilege: every SECURITY DEFINER function has a fixed search_path; ml_app and ml_trainer
   can write no model bytes and cannot reach the signing key.
The database test runs in a database of its own, made and dropped here: no rows other tests left.
"""
import os
import pickle
import re
import uuid
from pathlib import Path

import psycopg
import pytest

import pgmlkit
from conftest import own_database

ROOT = Path(__file__).resolve().parents[1]
LOADER = ROOT / "src/pgmlkit_server/loader.py"
DESERIALISE = re.compile(
    r"\b(?:pickle\.loads?|joblib\.load|sio\.loads?|skops\.io\.loads?|marshal\.loads?|cloudpickle\.loads?|dill\.loads?)\s*\("
    r"|^\s*(?:import|from)\s+(?:cloudpickle|dill|marshal)\b|from\s+(?:pickle|joblib|skops\.io)\s+import\s+[^\n]*\bload",
    re.MULTILINE)
FUNCTION = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+([\w.]+)\s*\((.*?)\$\$(.*?)\$\$", re.S | re.I)
LOADER_MESSAGE = re.compile(r"refusing to unpickle|refusing to load|signature (?:unsigned|mismatch)|sha256")


def deserialising_definitions(text: str):
    """[(function, offset, deserialises?)] for every function defined in one sql file, in order."""
    return [(m.group(1).split(".")[-1], m.start(), bool(DESERIALISE.search(m.group(3)))) for m in FUNCTION.finditer(text)]


def stray_deserialisers(sql_dir: Path = pgmlkit.SQL_DIR, package: Path = LOADER.parent) -> list[str]:
    """Deserialisation outside the loader. A teaching block ("as on the slide") may keep the
    slide's pickle.loads only if the same file later redefines that function without it."""
    strays = []
    for path in sorted(sql_dir.glob("*.sql")):
        text = path.read_text()
        definitions = deserialising_definitions(text)
        inside = [d for d in definitions if d[2]]
        for name, offset, _ in inside:
            later = [d for d in definitions if d[0] == name and d[1] > offset]
            if not later or later[-1][2]:
                strays.append(f"{path.name}: {name}() deserialises and is left so by the file")
        # outside any function body: a DO block, say
        bodies = [m.span(3) for m in FUNCTION.finditer(text)]
        for m in DESERIALISE.finditer(text):
            line = text[text.rfind("\n", 0, m.start()) + 1:m.start()]
            if not any(a <= m.start() < b for a, b in bodies) and "--" not in line:    # SQL comments may name it
                strays.append(f"{path.name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0).strip()}")
    for path in sorted(package.rglob("*.py")):
        if path != LOADER and DESERIALISE.search(path.read_text()):
            strays.append(f"{path.relative_to(ROOT)} deserialises outside the loader")
    return strays


def test_sql_deserialises_only_through_the_loader():
    assert stray_deserialisers() == []
    assert DESERIALISE.search(LOADER.read_text()), "the loader itself must be where bytes are deserialised"


def test_the_scan_finds_a_new_reader(tmp_path):
    (tmp_path / "99_stray.sql").write_text(
        "CREATE OR REPLACE FUNCTION stray(p text) RETURNS int AS $$\nimport pickle\n"
        "m = pickle.loads(plpy.execute('SELECT model_data FROM ml_models')[0]['model_data'])\n$$ LANGUAGE plpython3u;\n")
    assert stray_deserialisers(tmp_path) == ["99_stray.sql: stray() deserialises and is left so by the file"]
    (tmp_path / "99_stray.sql").write_text("DO $$\nimport joblib\njoblib.load(x)\n$$ LANGUAGE plpython3u;\n")
    assert stray_deserialisers(tmp_path) == ["99_stray.sql:3: joblib.load("]


def test_a_slide_block_is_allowed_only_when_the_file_redefines_it(tmp_path):
    slide = "CREATE OR REPLACE FUNCTION f() RETURNS int AS $$\nreturn pickle.loads(b)\n$$ LANGUAGE plpython3u;\n"
    fixed = "CREATE OR REPLACE FUNCTION f() RETURNS int AS $$\nreturn loader.load_deployed(plpy, GD, 'm')\n$$ LANGUAGE plpython3u;\n"
    (tmp_path / "05.sql").write_text(slide + fixed)
    assert stray_deserialisers(tmp_path) == []
    (tmp_path / "05.sql").write_text(fixed + slide)
    assert stray_deserialisers(tmp_path) == ["05.sql: f() deserialises and is left so by the file"]


# ---- the database ---------------------------------------------------------------------------------------
FILES = ["02_sample_data.sql", "03_serialisation.sql", "04_training.sql", "05_prediction.sql", "06_triggers.sql",
         "07_retraining.sql", "08_tradeoffs.sql", "10_compiled_models.sql", "09_hardening.sql"]   # 09 last, as it says
ROLES = ["ml_app", "ml_trainer"]


@pytest.fixture(scope="module")
def fresh():
    """A database of this module's own, with every sql/ file applied, models trained and deployed."""
    with own_database("test_loader") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            for file in FILES:
                pgmlkit.run_sql_file(file, conn)
            conn.execute("SELECT use_prediction_trigger('none')")
            conn.execute("SELECT load_sample_customers(2000, 42)")
            conn.execute("SELECT use_prediction_trigger('row')")
            conn.execute("SELECT train_purchase_model()")
            conn.execute("SELECT serialisation_demo_train('demo', 'pickle')")
            conn.execute("SELECT ml_deploy_compiled('purchase_predictor', 'planted_predictor_sql')")
        yield url


def test_no_function_in_the_database_deserialises(fresh):
    with psycopg.connect(fresh, autocommit=True) as conn:
        bodies = conn.execute("SELECT p.oid::regprocedure::text, p.proname, p.prosrc FROM pg_proc p"
                              " WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)").fetchall()
    assert {"predict_purchase", "ml_load_model", "ml_compile_to_sql", "serialisation_demo_predict"} <= {b[1] for b in bodies}
    assert [b[0] for b in bodies if DESERIALISE.search(b[2])] == []


@pytest.fixture(scope="module")
def planted(fresh):
    """A crafted pickle (unpickling it creates the canary file) in every bytea column of the kit's
    tables, every *sha256* column beside it recomputed, triggers bypassed: what an attacker with
    write access to the model tables can do. (ml_private, the key's schema, is the superuser's.)"""
    canary = f"/tmp/pgmlkit_canary_{uuid.uuid4().hex}"
    crafted = pickle.dumps(type("Planted", (), {"__reduce__": lambda self: (open, (canary, "w"))})())
    with psycopg.connect(fresh, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT table_schema, table_name, array_agg(column_name::text ORDER BY column_name) FILTER (WHERE data_type = 'bytea'),"
            "       array_agg(column_name::text ORDER BY column_name) FILTER (WHERE column_name LIKE '%sha256%')"
            "  FROM information_schema.columns WHERE table_schema IN ('public', 'ml')"
            " GROUP BY 1, 2 HAVING bool_or(data_type = 'bytea')").fetchall()
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            for schema, table, blobs, digests in columns:
                sets = [f"{c} = %(crafted)s" for c in blobs] + [f"{c} = encode(sha256(%(crafted)s), 'hex')" for c in digests or []]
                conn.execute(f'UPDATE "{schema}"."{table}" SET {", ".join(sets)}', {"crafted": crafted})
    assert {t for _, t, _, _ in columns} >= {"ml_models", "ml_model_versions", "serialisation_demo"}
    assert not os.path.exists(canary)
    yield canary
    if os.path.exists(canary):
        os.remove(canary)


SAMPLE = {"integer": "30", "bigint": "30", "numeric": "60000", "double precision": "700", "boolean": "true",
          "jsonb": "'{}'", "double precision[]": "ARRAY[30, 60000, 720]::float8[]", "integer[]": "ARRAY[30]",
          "numeric[]": "ARRAY[60000]::numeric[]"}


def model_readers(conn) -> list[tuple[str, str]]:
    """(function, call) for every kit function that takes a model name, or reads the default model
    (its body, or a function it calls, names the loader) — found in pg_proc, not listed by hand."""
    procs = conn.execute(
        "SELECT p.oid::regprocedure::text, n.nspname, p.proname, p.prosrc, p.pronargs - p.pronargdefaults,"
        "       coalesce(p.proargnames, '{}'), p.proargtypes::regtype[]::text[]"
        "  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname IN ('public', 'ml') AND p.prorettype <> 'trigger'::regtype AND p.prokind = 'f'").fetchall()
    # A module of the server library that reads model bytes (through the loader, or by calling
    # ml_load_model from Python): a function that imports it reads too.
    library = pgmlkit.KIT_ROOT / "src" / "pgmlkit_server"
    reading_modules = {p.stem for p in library.glob("*.py")
                       if p.stem == "loader" or re.search(r"\bml_load_model\s*\(|\bloader\.|from \.loader import", p.read_text())}
    assert {"loader", "runtime"} <= reading_modules, reading_modules
    imports_a_reader = re.compile(rf"from pgmlkit_server import .*\b({'|'.join(sorted(reading_modules))})\b")
    reads = {"ml_load_model"}
    for _ in range(6):                                  # who calls a reader reads too (a few levels deep)
        reads |= {name for _, _, name, src, *_ in procs
                  if imports_a_reader.search(src) or any(re.search(rf"\b{r}\s*\(", src) for r in reads)}
    calls = []
    for signature, schema, name, src, required, argnames, types in procs:
        takes_name = any(re.fullmatch(r"(p_)?(model_)?name|(p_)?model", a or "") for a in argnames[:max(required, 1)])
        if not (takes_name or name in reads):
            continue
        args = []
        for i, t in enumerate(types[:required]):
            arg = argnames[i] if i < len(argnames) else ""
            if t == "text":
                args.append("'demo'" if name.startswith("serialisation_demo") else
                            "'planted_predictor_sql'" if "function" in arg else "'purchase_predictor'")
            elif t in SAMPLE:
                args.append(SAMPLE[t])
            else:
                args = None
                break
        if args is not None:
            calls.append((signature, f"SELECT * FROM {schema}.{name}({', '.join(args)})", name in reads))
    return calls


def call_all(url, role, canary):
    outcomes = {}
    with psycopg.connect(url, autocommit=True) as conn:
        calls = model_readers(conn)
        if role:
            conn.execute(f"SET ROLE {role}")
        for signature, sql, reads in calls:
            try:
                with conn.transaction(force_rollback=True):   # a trainer's retrain must not replace the plant
                    conn.execute(sql).fetchall()
                outcomes[signature] = (reads, "ok")
            except psycopg.Error as error:
                outcomes[signature] = (reads, error.diag.message_primary or str(error))
            assert not os.path.exists(canary), f"{sql} as {role or 'superuser'} ran the planted pickle"
    return outcomes


@pytest.mark.parametrize("role", [None] + ROLES)
def test_the_planted_pickle_never_runs(fresh, planted, role):
    outcomes = call_all(fresh, role, planted)
    for signature, (reads, outcome) in sorted(outcomes.items()):         # shown with pytest -s
        print(f"{role or 'superuser':10} {'reads' if reads else '     '} {signature}: {outcome[:110]}")
    readers = {s: o for s, (reads, o) in outcomes.items() if reads}
    assert {"predict_purchase(integer,numeric,integer)", "ml_load_model(text)", "ml_predict(text,double precision[],double precision)",
            "ml_compile_to_sql(text,text,integer)", "serialisation_demo_predict(text,double precision,double precision,double precision)",
            "ml_deploy_compiled(text,text,integer)"} <= set(readers), sorted(outcomes)
    # Every outcome: refused by the loader, refused by privileges, or answered without deserialising
    # (linear fast paths predict from the registry's coefficients, never from the bytes).
    refused = {s: o for s, o in readers.items() if o != "ok"}
    for signature in ("predict_purchase(integer,numeric,integer)", "ml_load_model(text)",
                      "ml_compile_to_sql(text,text,integer)", "ml_deploy_compiled(text,text,integer)",
                      "serialisation_demo_predict(text,double precision,double precision,double precision)"):
        outcome = readers[signature]
        expected = LOADER_MESSAGE if role is None else re.compile(LOADER_MESSAGE.pattern + "|permission denied")
        assert expected.search(outcome), f"{signature} as {role or 'superuser'}: {outcome}"
    assert role or any(LOADER_MESSAGE.search(o) for o in refused.values())
    assert not os.path.exists(planted)


def test_the_prediction_triggers_refuse_the_planted_pickle(fresh, planted):
    with psycopg.connect(fresh, autocommit=True) as conn:
        for role in [None] + ["ml_app"]:
            with conn.transaction(force_rollback=True):
                if role:
                    conn.execute(f"SET LOCAL ROLE {role}")
                conn.execute("INSERT INTO customer_data (age, income, credit_score) VALUES (40, 60000, 700)")
                conn.execute("RESET ROLE")
                (error,) = conn.execute("SELECT error FROM ml_prediction_errors ORDER BY error_id DESC LIMIT 1").fetchone()
            assert LOADER_MESSAGE.search(error), error
    assert not os.path.exists(planted)


def test_least_privilege(fresh):
    with psycopg.connect(fresh, autocommit=True) as conn:
        listing = conn.execute(
            "SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner), p.prosecdef, coalesce(p.proconfig, '{}'),"
            "       ARRAY(SELECT r FROM unnest(ARRAY['ml_app', 'ml_trainer', 'ml_owner']) r"
            "              WHERE has_function_privilege(r, p.oid, 'EXECUTE'))"
            "  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
            "   AND (p.prosecdef OR p.prosrc LIKE '%ml_private%' OR p.prosrc LIKE '%loader.%')").fetchall()
        writable = conn.execute(
            "SELECT r, c.table_schema || '.' || c.table_name || '.' || c.column_name"
            "  FROM information_schema.columns c, unnest(ARRAY['ml_app', 'ml_trainer']) r"
            " WHERE c.data_type = 'bytea' AND c.table_schema NOT IN ('pg_catalog', 'information_schema')"
            "   AND (has_column_privilege(r, format('%I.%I', c.table_schema, c.table_name), c.column_name, 'INSERT')"
            "     OR has_column_privilege(r, format('%I.%I', c.table_schema, c.table_name), c.column_name, 'UPDATE'))"
            ).fetchall()
        key_readers = conn.execute(
            "SELECT r FROM unnest(ARRAY['ml_app', 'ml_trainer', 'ml_owner']) r"
            " WHERE has_table_privilege(r, 'ml_private.model_signing_key', 'SELECT')").fetchall()
    by_name = {f: (owner, definer, config, who) for f, owner, definer, config, who in listing}
    assert "ml_load_model(text)" in by_name and by_name["ml_load_model(text)"][1]
    for function, (owner, definer, config, who) in by_name.items():
        if definer:
            assert any(c.startswith("search_path=") for c in config), f"{function} is SECURITY DEFINER without a search_path"
        assert not ({"ml_app", "ml_trainer"} & set(who)) or function.startswith("ml."), (function, who)
    assert writable == [], "ml_app / ml_trainer may write model bytes"
    assert key_readers == []


def test_a_hand_edited_coefficient_is_refused_like_a_planted_pickle():
    """The linear fast path predicts from ml_model_versions.parameters, not from the bytes: those numbers
    are signed too, and a change to them (triggers bypassed, the bytes untouched) is refused."""
    with own_database("test_coefficients") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            for file in ("02_sample_data.sql", "04_training.sql", "05_prediction.sql"):
                pgmlkit.run_sql_file(file, conn)
            conn.execute("SELECT load_sample_customers(2000, 42)")
            conn.execute("SELECT train_purchase_model()")
            assert conn.execute("SELECT ml_private.model_signature_status('purchase_predictor', 1)").fetchone()[0] == "valid"
            genuine = conn.execute("SELECT predict_purchase_cached(30, 60000, 720)").fetchone()[0]
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
                conn.execute("UPDATE ml_model_versions SET parameters = jsonb_set(parameters, '{intercept}', '1e6')"
                             " WHERE model_name = 'purchase_predictor'")
            assert conn.execute("SELECT ml_private.model_signature_status('purchase_predictor', 1)").fetchone()[0] == "mismatch"
        for call in ("predict_purchase_cached(30, 60000, 720)", "ml_predict('purchase_predictor', ARRAY[30, 60000, 720])"):
            with psycopg.connect(url, autocommit=True) as session:          # a new session: nothing cached
                with pytest.raises(psycopg.errors.DataCorrupted, match="signature mismatch; refusing to predict"):
                    session.execute(f"SELECT {call}")

        # An older kit's registry: bytes signed, coefficients not. Re-applying sql/04 signs them once,
        # because the bytes' signature is valid; then they predict again.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT train_purchase_model()")                  # version 2, genuine
            conn.execute("UPDATE ml_private.model_signatures SET parameters_hmac = NULL")
            statuses = dict(conn.execute("SELECT version, ml_private.model_signature_status(model_name, version)"
                                         " FROM ml_model_versions ORDER BY version").fetchall())
            assert statuses == {1: "unsigned", 2: "unsigned"}
            # The signature of a version since deleted from the registry (its owner may delete): the
            # re-apply's status check is evaluated on it too (the planner filters signatures before
            # joining them to versions), and must not call the HMAC on bytes that are not there.
            conn.execute("INSERT INTO ml_private.model_signatures (model_name, version, hmac) VALUES ('forgotten', 7, 'x')")
            assert conn.execute("SELECT ml_private.model_signature_status('forgotten', 7)").fetchone()[0] == "not registered"
            pgmlkit.run_sql_file("04_training.sql", conn)
            statuses = dict(conn.execute("SELECT version, ml_private.model_signature_status(model_name, version)"
                                         " FROM ml_model_versions ORDER BY version").fetchall())
            assert statuses == {1: "valid", 2: "valid"}   # v1's tampered numbers too: trust on first use, as adoption
            assert conn.execute("SELECT predict_purchase_cached(30, 60000, 720)").fetchone()[0] == pytest.approx(genuine)
