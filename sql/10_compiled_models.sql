-- 10 — models compiled to SQL: a trained scikit-learn model becomes a plain SQL function — a linear
-- model one arithmetic expression, a tree nested CASE, a forest or boosted ensemble a sum of CASEs —
-- that the planner inlines into the query. No pickle, no Python at prediction time, readable by an
-- auditor; every compiled function is traced to the registry version it came from.
-- Apply with: psql "$DATABASE_URL" -f sql/10_compiled_models.sql   (idempotent; needs sql/02, sql/04 first)
-- Then:       SELECT ml_deploy_compiled('purchase_predictor', 'purchase_predictor_sql');
--             SELECT purchase_predictor_sql(35, 50000, 700);

-- @block ml_compiled_functions
-- Which function was compiled from which model version: an auditor's trace from a prediction back
-- to the training run (ml_model_versions holds its data range, metrics and parameters).
CREATE TABLE IF NOT EXISTS ml_compiled_functions (
    function_name     text PRIMARY KEY,
    signature         text        NOT NULL,   -- e.g. purchase_predictor_sql(double precision, ...)
    model_name        text        NOT NULL,
    version           integer     NOT NULL,
    model_sha256      text        NOT NULL,   -- the registry digest of the bytes it was compiled from
    algorithm         text        NOT NULL,   -- the estimator's class
    features          text[]      NOT NULL,   -- the function's parameters, in the model's order
    sql_bytes         integer     NOT NULL,   -- size of the generated CREATE FUNCTION text
    tree_nodes        integer     NOT NULL,   -- decision nodes + leaves (0 for a linear model)
    definition_sha256 text        NOT NULL,   -- of pg_get_functiondef(): detects a hand edit
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        text        NOT NULL DEFAULT current_user,
    FOREIGN KEY (model_name, version) REFERENCES ml_model_versions (model_name, version)
);

-- @block ml_compile_to_sql
-- The compiler. Loads one registered version (the deployed one when p_version is NULL) through the
-- same loader as ml_load_model (size, digest, signature, library versions), and returns the CREATE FUNCTION statement
-- that computes the model's predict() in SQL. It only returns text: read it, diff it, then deploy
-- it with ml_deploy_compiled. Exactness, estimator by estimator:
--   linear       intercept + Σ coefficient·feature, in float8 (sklearn's BLAS dot product may sum in
--                another order: differences of ~1e-12 relative);
--   scaler+linear  (x - mean) / scale first, as the Pipeline does;
--   sklearn trees  scikit-learn compares float32(x) with the threshold, so each threshold t becomes
--                the exact float8 cut m with x <= m (or x < m) ⇔ float32(x) <= t: same leaf, always;
--   HistGradientBoosting compares float8 x with float8 thresholds: copied as they are.
-- Leaves are summed in scikit-learn's order (base + tree 1 + tree 2 ...), so ensembles agree to
-- the last bits. A NULL feature gives NULL. Anything else is refused with SQLSTATE 0A000.
-- The SQL is written by pgmlkit_server.sql_compiler (src/pgmlkit_server/sql_compiler.py).
CREATE OR REPLACE FUNCTION ml_compile_to_sql(p_model_name text, p_function_name text, p_version integer DEFAULT NULL)
RETURNS text
LANGUAGE plpython3u
SECURITY DEFINER                -- the loader reads the signing key; the caller gets SQL text, never the key
SET search_path = public, pg_temp
AS $$
import re
from pgmlkit_server import loader

if not p_model_name or not p_function_name:
    plpy.error("ml_compile_to_sql: model name and function name must not be NULL or empty",
               hint="For example: SELECT ml_compile_to_sql('purchase_predictor', 'purchase_predictor_sql');",
               sqlstate="22023")
if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", p_function_name):
    plpy.error(f"ml_compile_to_sql: {p_function_name!r} is not a plain lower-case SQL name",
               hint="Use letters, digits and underscores, starting with a letter, e.g. purchase_predictor_sql.",
               sqlstate="22023")

version = p_version
if version is None:
    found = plpy.execute(plpy.prepare("SELECT version FROM ml_models WHERE model_name = $1", ["text"]), [p_model_name])
    if not found or found[0]["version"] is None:
        plpy.error(f"no model named {p_model_name!r} is deployed",
                   hint="Train and deploy one: SELECT train_purchase_model(); or pass a version.", sqlstate="P0002")
    version = found[0]["version"]
# The kit's one loader: size, sha256, signature and library versions, before anything is unpickled.
sha256, model = loader.load(plpy, GD, p_model_name, version)
row = plpy.execute(plpy.prepare("SELECT features FROM ml_model_versions WHERE model_name = $1 AND version = $2",
                                ["text", "integer"]), [p_model_name, version])[0]

# The compiler is pgmlkit_server.sql_compiler, fed by the same tree reader as ml_predict (sql/05).
from pgmlkit_server import sql_compiler
try:
    return sql_compiler.create_function(model, row["features"], p_function_name, p_model_name, version, sha256)
except sql_compiler.Unsupported as why:
    plpy.error(f"cannot compile model {p_model_name!r} version {version} to SQL: {why}",
               hint="Supported: " + sql_compiler.SUPPORTED + ". Serve other models with ml_predict() (sql/05).",
               sqlstate="0A000")
$$;

-- @block ml_deploy_compiled
-- Compile a version (the deployed one by default) and create the function, recorded in
-- ml_compiled_functions and in its COMMENT. It refuses to replace a function it did not create.
-- The function is IMMUTABLE: the model is baked in, so the same inputs give the same result until
-- you deploy again — which is exactly why ml_compiled_is_current() exists.
CREATE OR REPLACE FUNCTION ml_deploy_compiled(p_model_name text, p_function_name text, p_version integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    v_version integer := p_version;
    v_row ml_model_versions%ROWTYPE;
    v_sql text;
    v_oid regprocedure;
    v_old text;
    v_features text[];
    v_signature text;
BEGIN
    IF v_version IS NULL THEN
        SELECT version INTO v_version FROM ml_models WHERE model_name = p_model_name;
    END IF;
    -- One deployer per function at a time (a concurrent second one waits, then replaces).
    PERFORM pg_advisory_xact_lock(hashtext('ml_compiled_functions:' || coalesce(p_function_name, '')));
    v_sql := ml_compile_to_sql(p_model_name, p_function_name, v_version);   -- all argument checks
    SELECT * INTO v_row FROM ml_model_versions WHERE model_name = p_model_name AND version = v_version;
    -- The parameters are the model's features (from the registry, or the names it was fitted with).
    v_features := ARRAY(SELECT m[1] FROM regexp_matches(
                            substring(v_sql from '^CREATE OR REPLACE FUNCTION \w+\(([^)]*)\)'),
                            '(\w+) double precision', 'g') AS m);
    v_signature := format('%s(%s)', p_function_name,
                          array_to_string(array_fill('double precision'::text, ARRAY[cardinality(v_features)]), ','));
    SELECT signature INTO v_old FROM ml_compiled_functions WHERE function_name = p_function_name;
    -- The compiler's own output is recognised by its provenance row, or, if a reset of the registry
    -- took that row away (TRUNCATE ... CASCADE), by the COMMENT it always writes on the function.
    IF v_old IS NULL AND EXISTS (SELECT FROM pg_proc WHERE proname = p_function_name
                                    AND pronamespace = current_schema()::regnamespace
                                    AND coalesce(obj_description(oid, 'pg_proc'), '')
                                        NOT LIKE 'Compiled by ml_deploy_compiled %') THEN
        RAISE EXCEPTION 'a function named % exists and was not created by ml_deploy_compiled', p_function_name
            USING HINT = 'Pick another name: the compiler never replaces a function it did not write.',
                  ERRCODE = '42723';                                       -- duplicate_function
    END IF;
    IF v_old IS NOT NULL AND to_regprocedure(v_old) IS NOT NULL AND v_old <> v_signature THEN
        EXECUTE format('DROP FUNCTION %s', v_old);                          -- other parameters: replace
    END IF;
    EXECUTE v_sql;
    v_oid := to_regprocedure(v_signature);
    EXECUTE format('COMMENT ON FUNCTION %s IS %L', v_oid,
                   format('Compiled by ml_deploy_compiled from model %s version %s (%s, sha256 %s) on %s by %s. '
                          'Check it with SELECT ml_compiled_is_current(%L).',
                          p_model_name, v_version, v_row.algorithm, v_row.model_sha256, now(), current_user,
                          p_function_name));
    INSERT INTO ml_compiled_functions AS c (function_name, signature, model_name, version, model_sha256, algorithm,
                                            features, sql_bytes, tree_nodes, definition_sha256)
    VALUES (p_function_name, v_oid::text, p_model_name, v_version, v_row.model_sha256,
            coalesce(v_row.algorithm, 'unknown'), v_features, octet_length(v_sql),
            coalesce(substring(v_sql from ', (\d+) tree nodes\)')::integer, 0),
            encode(sha256(convert_to(pg_get_functiondef(v_oid), 'UTF8')), 'hex'))
    ON CONFLICT (function_name) DO UPDATE
       SET signature = EXCLUDED.signature, model_name = EXCLUDED.model_name, version = EXCLUDED.version,
           model_sha256 = EXCLUDED.model_sha256, algorithm = EXCLUDED.algorithm, features = EXCLUDED.features,
           sql_bytes = EXCLUDED.sql_bytes, tree_nodes = EXCLUDED.tree_nodes,
           definition_sha256 = EXCLUDED.definition_sha256, created_at = now(), created_by = current_user;
    RETURN v_version;
END;
$$;

-- @block ml_compiled_status
-- Is each compiled function still the model in use? Not current when the model was retrained or
-- rolled back since (the function still computes the old version), or when someone replaced the
-- function by hand (its definition no longer matches the one recorded).
CREATE OR REPLACE FUNCTION ml_compiled_status()
RETURNS TABLE (function_name text, model_name text, compiled_version integer, deployed_version integer,
               is_current boolean, reason text)
LANGUAGE sql STABLE
AS $$
    SELECT c.function_name, c.model_name, c.version, m.version,
           f.oid IS NOT NULL AND m.version = c.version AND d.sha = c.definition_sha256,
           CASE WHEN f.oid IS NULL THEN 'the function ' || c.signature || ' no longer exists'
                WHEN m.version IS NULL THEN 'model ' || c.model_name || ' is not deployed'
                WHEN m.version <> c.version THEN format('compiled from version %s, version %s is deployed: '
                                                        'SELECT ml_deploy_compiled(%L, %L);', c.version, m.version,
                                                        c.model_name, c.function_name)
                WHEN d.sha <> c.definition_sha256 THEN 'the function was changed after it was compiled'
                ELSE 'current' END
      FROM ml_compiled_functions c
      LEFT JOIN ml_models m ON m.model_name = c.model_name
      LEFT JOIN LATERAL (SELECT to_regprocedure(c.signature) AS oid) f ON true
      LEFT JOIN LATERAL (SELECT encode(sha256(convert_to(pg_get_functiondef(f.oid), 'UTF8')), 'hex') AS sha) d ON true
$$;

CREATE OR REPLACE FUNCTION ml_compiled_is_current(p_function_name text)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT coalesce((SELECT is_current FROM ml_compiled_status() WHERE function_name = p_function_name), false)
$$;

-- @block ml_compiled_check
-- The proof, on the server: the compiled function against scikit-learn's predict() of the model
-- *deployed now*, on the first n_rows complete rows of customer_data. max_abs_diff is ~0 when
-- they agree; after a retrain without recompiling it is the gap between the two versions.
CREATE OR REPLACE FUNCTION ml_compiled_check(p_function_name text, n_rows integer DEFAULT 5000)
RETURNS TABLE (model_name text, compiled_version integer, deployed_version integer, rows_compared integer,
               max_abs_diff double precision, max_rel_diff double precision)
LANGUAGE plpython3u
AS $$
import numpy as np
c = plpy.execute(plpy.prepare("SELECT model_name, version, features FROM ml_compiled_functions WHERE function_name = $1",
                              ["text"]), [p_function_name])
if not c:
    plpy.error(f"{p_function_name!r} is not a compiled function",
               hint="SELECT function_name FROM ml_compiled_functions;", sqlstate="42883")
name, compiled, features = c[0]["model_name"], c[0]["version"], c[0]["features"]
deployed = plpy.execute(plpy.prepare("SELECT ml_load_model($1) AS v", ["text"]), [name])[0]["v"]
model = GD["ml_models"][(name, deployed)]
cols = ", ".join(f"{f}::float8 AS {f}" for f in features)
where = " AND ".join(f"{f} IS NOT NULL" for f in features)
rows = plpy.execute(f"SELECT {cols}, {p_function_name}({', '.join(features)}) AS compiled"
                    f" FROM customer_data WHERE {where} ORDER BY id LIMIT {int(n_rows)}")
if rows.nrows() == 0:
    plpy.error("customer_data has no complete rows to compare on", hint="SELECT load_sample_customers();")
X = np.array([[r[f] for f in features] for r in rows], dtype=np.float64)
got = np.array([r["compiled"] for r in rows], dtype=np.float64)
want = np.asarray(model.predict(X), dtype=np.float64)
diff = np.abs(got - want)
return [(name, compiled, deployed, rows.nrows(), float(diff.max()),
         float((diff / np.maximum(1.0, np.abs(want))).max()))]
$$;
