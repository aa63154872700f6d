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
CREATE OR REPLACE FUNCTION ml_compile_to_sql(p_model_name text, p_function_name text, p_version integer DEFAULT NULL)
RETURNS text
LANGUAGE plpython3u
SECURITY DEFINER                -- the loader reads the signing key; the caller gets SQL text, never the key
SET search_path = public, pg_temp
AS $$
import json, re
import numpy as np
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

names = getattr(model, "feature_names_in_", None)
features = list(row["features"] or ([str(n) for n in names] if names is not None else []))
if not features:
    plpy.error(f"model {p_model_name!r} version {version}: the registry names no features, so the function's "
               "parameters are unknown", hint="Train it with train_purchase_model(), which records them.",
               sqlstate="0A000")
for f in features:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", f):
        plpy.error(f"feature {f!r} is not a plain lower-case SQL name", sqlstate="0A000")
k = len(features)

LINEAR = {"LinearRegression", "Ridge", "RidgeCV", "Lasso", "LassoCV", "ElasticNet", "ElasticNetCV", "Lars",
          "LarsCV", "LassoLars", "LassoLarsCV", "LassoLarsIC", "BayesianRidge", "ARDRegression", "HuberRegressor",
          "SGDRegressor", "TheilSenRegressor", "QuantileRegressor", "OrthogonalMatchingPursuit", "LinearSVR"}
SUPPORTED = ("linear regressors (LinearRegression, Ridge, Lasso, ...), a Pipeline of StandardScaler steps and one, "
             "DecisionTreeRegressor, ExtraTreeRegressor, RandomForestRegressor, ExtraTreesRegressor, "
             "GradientBoostingRegressor (squared error), HistGradientBoostingRegressor (numeric features)")

def refuse(why):
    plpy.error(f"cannot compile model {p_model_name!r} version {version} to SQL: {why}",
               hint="Supported: " + SUPPORTED + ". Serve other models with ml_predict() (sql/05).", sqlstate="0A000")

def lit(value):
    value = float(value)
    if not np.isfinite(value):
        refuse(f"it contains the non-finite number {value!r}")
    return repr(value)                     # shortest text that parses back to the same float8

def leaf(value):
    return lit(value) + "::float8"        # float8, not numeric: the CASE and the sums stay float8

def float32_cut(threshold):
    """(operator, cut) with  x <op> cut  ⇔  float32(x) <= threshold, for float8 x."""
    f = np.float32(threshold)
    if float(f) > threshold:
        f = np.nextafter(f, np.float32(-np.inf))
    g = np.nextafter(f, np.float32(np.inf))
    cut = (float(f) + float(g)) / 2       # exact in float8: the rounding boundary between f and g
    even = int(np.array(f, dtype=np.float32).view(np.uint32)) & 1 == 0
    return ("<=" if even else "<"), cut   # at the boundary itself float32() rounds to the even one

counted = [0]                              # tree nodes written, for the size-vs-speed chart
def tree_sql(feature, threshold, left, right, value, float32_inputs):
    def node(i):
        counted[0] += 1
        if left[i] < 0:
            return leaf(value[i])
        if float32_inputs:
            op, cut = float32_cut(threshold[i])
        else:
            op, cut = "<=", float(threshold[i])
        return (f"CASE WHEN {features[feature[i]]} {op} {lit(cut)} THEN {node(left[i])}"
                f" ELSE {node(right[i])} END")
    return node(0)

def sklearn_tree(tree, scale=1.0):
    if tree.n_outputs != 1:
        refuse("multi-output trees are not supported")
    values = tree.value[:, 0, 0]
    if scale != 1.0:
        values = scale * values            # the multiplication scikit-learn does per prediction
    return tree_sql(tree.feature.tolist(), tree.threshold.tolist(), tree.children_left.tolist(),
                    tree.children_right.tolist(), values.tolist(), True)

def null_guard(expression):
    # CASE sends a NULL comparison to ELSE, which would give a number for an unknown input.
    test = " OR ".join(f"{f} IS NULL" for f in features)
    return f"CASE WHEN {test} THEN NULL ELSE {expression} END"

def linear_sql(estimator, centre=None, scale=None):
    coef, intercept = np.asarray(estimator.coef_, dtype=np.float64), np.asarray(estimator.intercept_)
    if coef.ndim != 1 or intercept.ndim != 0 or len(coef) != k:
        refuse(f"{kind}: expected one coefficient per feature and one intercept")
    terms = [lit(intercept)]
    for i, f in enumerate(features):
        x = f
        if centre is not None and centre[i] != 0.0:
            x = f"({x} - {lit(centre[i])})"
        if scale is not None and scale[i] != 1.0:
            x = f"({x} / {lit(scale[i])})"
        terms.append(f"{lit(coef[i])} * {x}")
    return "(" + " + ".join(terms) + ")"

kind = type(model).__name__
if not type(model).__module__.startswith("sklearn."):
    refuse(f"{type(model).__module__}.{kind} is not a scikit-learn estimator")
if getattr(model, "n_features_in_", k) != k:
    refuse(f"the model expects {model.n_features_in_} features, the registry names {k}")

if kind == "Pipeline":
    *scalers, (_, final) = model.steps
    centre, scale = np.zeros(k), np.ones(k)
    for _, step in scalers:
        if type(step).__name__ != "StandardScaler":
            refuse(f"Pipeline step {type(step).__name__} (only StandardScaler steps before a linear model)")
        m = step.mean_ if step.mean_ is not None else np.zeros(k)
        s = step.scale_ if step.scale_ is not None else np.ones(k)
        if len(scalers) > 1:
            refuse("more than one StandardScaler in a Pipeline")
        centre, scale = np.asarray(m, dtype=np.float64), np.asarray(s, dtype=np.float64)
    if type(final).__name__ not in LINEAR:
        refuse(f"Pipeline ending in {type(final).__name__}")
    kind = f"Pipeline({', '.join(type(s).__name__ for _, s in model.steps)})"
    expression = linear_sql(final, centre, scale)
elif kind in LINEAR:
    expression = linear_sql(model)
elif kind in ("DecisionTreeRegressor", "ExtraTreeRegressor"):
    expression = null_guard(sklearn_tree(model.tree_))
elif kind in ("RandomForestRegressor", "ExtraTreesRegressor"):
    trees = [sklearn_tree(e.tree_) for e in model.estimators_]
    # scikit-learn: 0 + tree 1 + tree 2 + ..., then / n_estimators
    expression = null_guard(f"({' + '.join(trees)}) / {len(trees)}")
elif kind == "GradientBoostingRegressor":
    if model.estimators_.shape[1] != 1 or model.loss != "squared_error":
        refuse(f"GradientBoostingRegressor with loss {model.loss!r}")
    base = float(model._raw_predict_init(np.zeros((1, k)))[0, 0])
    trees = [sklearn_tree(stage[0].tree_, model.learning_rate) for stage in model.estimators_]
    expression = null_guard(" + ".join([leaf(base)] + trees))
elif kind == "HistGradientBoostingRegressor":
    if getattr(model, "_preprocessor", None) is not None or type(model._loss.link).__name__ != "IdentityLink":
        refuse("HistGradientBoostingRegressor with categorical features or a non-identity link")
    trees = []
    for predictors in model._predictors:
        p = predictors[0].nodes
        if p["is_categorical"].any():
            refuse("HistGradientBoostingRegressor with categorical splits")
        is_leaf = p["is_leaf"].tolist()
        trees.append(tree_sql(p["feature_idx"].tolist(), p["num_threshold"].tolist(),
                              [(-1 if l else int(c)) for l, c in zip(is_leaf, p["left"].tolist())],
                              p["right"].tolist(), p["value"].tolist(), False))
    base = float(np.ravel(model._baseline_prediction)[0])
    expression = null_guard(" + ".join([leaf(base)] + trees))
else:
    refuse(f"{kind} is not supported")

arguments = ", ".join(f"{f} double precision" for f in features)
return (f"CREATE OR REPLACE FUNCTION {p_function_name}({arguments})\n"
        f"RETURNS double precision\n"
        f"LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
        f"-- compiled from model {p_model_name} version {version} ({kind}, sha256 {sha256[:16]}…,"
        f" {counted[0]} tree nodes)\n"
        f"RETURN {expression}")
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
