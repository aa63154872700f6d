-- 08 — trade-offs, measured: the functions notebook 08 and `make bench` use to put numbers on the
-- talk's closing slide (speed, memory, retraining cost, interpretability, regulation).
-- Apply with: psql "$DATABASE_URL" -f sql/08_tradeoffs.sql      (idempotent; needs sql/02 and sql/04 first)
-- Then:       SELECT * FROM explain_purchase_prediction(35, 50000, 700);

-- @block plpython_call_floor
-- The cheapest possible PL/Python function with the prediction functions' signature: it converts
-- three arguments into Python objects, runs one line and converts the result back. No per-row
-- PL/Python function can be faster than this, so it is the floor every per-row path is measured against.
CREATE OR REPLACE FUNCTION plpython_call_floor(age integer, income double precision, credit_score integer)
RETURNS double precision
LANGUAGE plpython3u IMMUTABLE
AS $$
return income
$$;

-- @block plpython_array_floor
-- The same floor for batch functions: three arrays in, one array out, nothing computed. Converting
-- arrays between PostgreSQL and Python lists is the part of a batch call no model can avoid.
CREATE OR REPLACE FUNCTION plpython_array_floor(age integer[], income double precision[], credit_score integer[])
RETURNS double precision[]
LANGUAGE plpython3u IMMUTABLE
AS $$
return income
$$;

-- @block plpython_import_seconds
-- How long importing a module takes in this backend (0 if this session imported it already).
-- On a new connection this splits a cold start into its parts: numpy, scikit-learn, ...
CREATE OR REPLACE FUNCTION plpython_import_seconds(module text)
RETURNS double precision
LANGUAGE plpython3u STRICT
AS $$
import importlib, time
started = time.perf_counter()
importlib.import_module(module)
return time.perf_counter() - started
$$;

-- @block ml_predict_sklearn
-- scikit-learn's own predict() for one row, on the session's cached model. Works for every algorithm
-- train_purchase_model knows, which is what makes it the fair yardstick for comparing them: the cost
-- is the model's, not the plumbing's. ml_load_model() is asked on every call (one cached-plan query),
-- so a newly deployed version is used from the next call on. Features in the model's order:
-- ARRAY[age, income, credit_score].
CREATE OR REPLACE FUNCTION ml_predict_sklearn(model_name text, features double precision[])
RETURNS double precision
LANGUAGE plpython3u STRICT
AS $$
import numpy as np

plan = GD.get("ml_predict_sklearn.load")
if plan is None:
    plan = GD["ml_predict_sklearn.load"] = plpy.prepare("SELECT ml_load_model($1) AS version", ["text"])
version = plan.execute([model_name])[0]["version"]
model = GD["ml_models"][(model_name, version)]
if any(value is None for value in features):
    return None                      # a missing feature has no prediction (see notebook 09 for logging it)
return float(model.predict(np.array([features], dtype=np.float64))[0])
$$;

-- @block ml_predict_sklearn_batch
-- The same model on many rows in one call: one conversion in, one predict() over a matrix, one
-- conversion out. features is a 2-D array, one row per prediction: the per-call cost is paid once.
CREATE OR REPLACE FUNCTION ml_predict_sklearn_batch(model_name text, features double precision[])
RETURNS double precision[]
LANGUAGE plpython3u STRICT
AS $$
import numpy as np

plan = GD.get("ml_predict_sklearn.load")
if plan is None:
    plan = GD["ml_predict_sklearn.load"] = plpy.prepare("SELECT ml_load_model($1) AS version", ["text"])
version = plan.execute([model_name])[0]["version"]
model = GD["ml_models"][(model_name, version)]
X = np.array(features, dtype=np.float64)
if X.size == 0:
    return []
if X.ndim != 2:
    plpy.error(f"ml_predict_sklearn_batch wants a 2-D array (one row per prediction), got {X.ndim} dimension(s)",
               hint="Build it with array_agg(ARRAY[age, income, credit_score]::float8[]).")
return model.predict(X).tolist()
$$;

-- @block backend_memory
-- How much memory this backend process uses, read from Linux's /proc (the backend is the process
-- that runs PL/Python; its pid is pg_backend_pid()). rss_anon_kb is the private heap — Python
-- objects, numpy arrays, unpickled models — without the shared buffers the process has touched,
-- so it is the number that grows when a model is loaded. Every connection pays it separately.
CREATE OR REPLACE FUNCTION backend_memory()
RETURNS TABLE (pid integer, rss_kb bigint, rss_anon_kb bigint, peak_rss_kb bigint)
LANGUAGE plpython3u VOLATILE
AS $$
import os

pid = plpy.execute("SELECT pg_backend_pid() AS pid")[0]["pid"]
try:
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
except OSError as error:
    plpy.error(f"cannot read /proc/{pid}/status: {error}",
               hint="backend_memory() needs PostgreSQL on Linux (the kit's native or Docker setup).")
kb = lambda key: int(fields[key].split()[0]) if key in fields else None
return [(pid, kb("VmRSS"), kb("RssAnon"), kb("VmHWM"))]
$$;

-- @block training_cost
-- What one retraining costs, without keeping the result: train_purchase_model() runs inside a
-- subtransaction that is then rolled back, so measuring leaves no version in the registry.
-- fetch_seconds is the part spent only moving the rows from the table into Python, fit_seconds
-- the part scikit-learn's fit() took (as recorded in the registry); the rest is scoring the holdout,
-- pickling and registering.
CREATE OR REPLACE FUNCTION training_cost(algorithm text, n_rows integer, params jsonb DEFAULT '{}')
RETURNS TABLE (training_rows bigint, fetch_seconds double precision, fit_seconds double precision,
               total_seconds double precision, pickled_bytes integer, holdout_r2 double precision)
LANGUAGE plpython3u
AS $$
import json, time

class RollBack(Exception):
    """Raised on purpose to undo the training inside the subtransaction."""

if n_rows is None or n_rows < 10:
    plpy.error(f"training_cost needs n_rows >= 10, got {n_rows}")
started = time.perf_counter()
fetched = plpy.execute(
    "SELECT age::float8 AS age, income::float8 AS income, credit_score::float8 AS credit_score,"
    " purchase_amount::float8 AS purchase_amount FROM customer_data ORDER BY id LIMIT %d" % n_rows)
fetch_seconds = time.perf_counter() - started
if fetched.nrows() < n_rows:
    plpy.error(f"customer_data has {fetched.nrows()} rows, fewer than the {n_rows} asked for",
               hint=f"Load more first: SELECT load_sample_customers({n_rows});")
del fetched

train = plpy.prepare(
    "SELECT train_purchase_model('training_cost_probe', $1, false, $2, 0.2, 42, $3) AS version",
    ["text", "jsonb", "integer"])
about = plpy.prepare(
    "SELECT octet_length(model_data) AS bytes, training_rows, (metrics->>'r2')::float8 AS r2,"
    " (metrics->>'fit_seconds')::float8 AS fit_seconds"
    " FROM ml_model_versions WHERE model_name = 'training_cost_probe' AND version = $1", ["integer"])
try:
    with plpy.subtransaction():
        started = time.perf_counter()
        version = train.execute([algorithm, json.dumps(json.loads(params or "{}")), n_rows])[0]["version"]
        total_seconds = time.perf_counter() - started
        row = about.execute([version])[0]
        raise RollBack()
except RollBack:
    pass
return [(row["training_rows"], fetch_seconds, row["fit_seconds"], total_seconds, row["bytes"], row["r2"])]
$$;

-- @block explain_purchase_prediction
-- Why did the linear model predict this? prediction = intercept + Σ weight·value, so each feature's
-- share is exactly weight·value. The weights are read from the registry row of the version in use —
-- the same numbers an auditor reads — not from a pickle. The contributions sum to the prediction.
CREATE OR REPLACE FUNCTION explain_purchase_prediction(
    age integer, income double precision, credit_score integer,
    model_name text DEFAULT 'purchase_predictor')
RETURNS TABLE (feature text, value double precision, weight double precision, contribution double precision)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    deployed record;
BEGIN
    SELECT v.version, v.algorithm, v.parameters INTO deployed
      FROM ml_models m
      JOIN ml_model_versions v ON v.model_name = m.model_name AND v.version = m.version
     WHERE m.model_name = explain_purchase_prediction.model_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no model named % is deployed', explain_purchase_prediction.model_name
            USING HINT = 'Train and deploy one: SELECT train_purchase_model();';
    END IF;
    IF deployed.parameters IS NULL OR deployed.parameters->'coefficients' IS NULL THEN
        RAISE EXCEPTION 'model % version % is a %: per-feature weights exist only for linear models',
            explain_purchase_prediction.model_name, deployed.version, deployed.algorithm
            USING HINT = 'For a decision tree use explain_tree_prediction(model_name, features).';
    END IF;
    RETURN QUERY
    SELECT t.name, t.x, t.w, t.x_times_w
      FROM (SELECT 0 AS position, '(intercept)' AS name, NULL::float8 AS x, NULL::float8 AS w,
                   (deployed.parameters->>'intercept')::float8 AS x_times_w
            UNION ALL
            SELECT f.position, f.name, f.x, c.w, f.x * c.w
              FROM (VALUES (1, 'age', age::float8),
                           (2, 'income', income),
                           (3, 'credit_score', credit_score::float8)) AS f(position, name, x)
             CROSS JOIN LATERAL (SELECT (deployed.parameters->'coefficients'->>f.name)::float8 AS w) AS c
           ) AS t
     ORDER BY t.position;
END;
$$;

-- @block explain_tree_prediction
-- Why did the decision tree predict this? A tree's prediction is the mean of the training rows in
-- one leaf; the path to that leaf is a list of yes/no questions. Each row below is one question,
-- and `contribution` is how much the answer moved the running mean (the root's mean plus all
-- contributions is the prediction). sklearn's own decision_path() picks the nodes, so the path is
-- exactly the one predict() follows.
CREATE OR REPLACE FUNCTION explain_tree_prediction(model_name text, features double precision[])
RETURNS TABLE (step integer, node integer, feature text, threshold double precision, value double precision,
               decision text, node_mean double precision, contribution double precision)
LANGUAGE plpython3u STRICT
AS $$
import numpy as np

version = plpy.execute(plpy.prepare("SELECT ml_load_model($1) AS version", ["text"]), [model_name])[0]["version"]
model = GD["ml_models"][(model_name, version)]
if not hasattr(model, "tree_"):
    plpy.error(f"model {model_name!r} version {version} is a {type(model).__name__}, not a single decision tree",
               hint="A forest averages many paths: use ml_feature_importances(model_name) for it, "
                    "or train a tree: SELECT train_purchase_model('purchase_tree', 'decision_tree');")
names = plpy.execute(plpy.prepare(
    "SELECT features FROM ml_model_versions WHERE model_name = $1 AND version = $2", ["text", "integer"]),
    [model_name, version])[0]["features"]
if len(features) != len(names):
    plpy.error(f"model {model_name!r} expects {len(names)} features {names}, got {len(features)}")
X = np.array([features], dtype=np.float64)
tree = model.tree_
path = sorted(model.decision_path(X).indices)       # children always have larger ids than parents
means = tree.value[:, 0, 0]
rows = []
for step, (node, child) in enumerate(zip(path, path[1:])):
    f = tree.feature[node]
    went_left = child == tree.children_left[node]
    rows.append((step, int(node), names[f], float(tree.threshold[node]), float(X[0, f]),
                 "<= threshold" if went_left else "> threshold",
                 float(means[node]), float(means[child] - means[node])))
leaf = path[-1]
rows.append((len(path) - 1, int(leaf), None, None, None, "leaf: prediction", float(means[leaf]), None))
return rows
$$;

-- @block ml_feature_importances
-- Which features a tree model relies on overall (impurity-based importances, summing to 1).
-- This is a global view of the model; explain_tree_prediction explains one prediction.
CREATE OR REPLACE FUNCTION ml_feature_importances(model_name text)
RETURNS TABLE (feature text, importance double precision)
LANGUAGE plpython3u STRICT
AS $$
version = plpy.execute(plpy.prepare("SELECT ml_load_model($1) AS version", ["text"]), [model_name])[0]["version"]
model = GD["ml_models"][(model_name, version)]
if not hasattr(model, "feature_importances_"):
    plpy.error(f"model {model_name!r} version {version} is a {type(model).__name__}, which has no built-in importances",
               hint="Linear models: read the weights with explain_purchase_prediction(); "
                    "others: sklearn.inspection.permutation_importance, computed outside a query.")
names = plpy.execute(plpy.prepare(
    "SELECT features FROM ml_model_versions WHERE model_name = $1 AND version = $2", ["text", "integer"]),
    [model_name, version])[0]["features"]
return sorted(zip(names, map(float, model.feature_importances_)), key=lambda pair: -pair[1])
$$;

-- @block ml_model_audit
-- What an auditor reads back: one row per model version — who trained it, when, from what
-- (source, row count, feature ranges), with which libraries, how well it did on held-out rows,
-- the digest of the exact bytes, and every time it was put into (or back into) service.
CREATE OR REPLACE VIEW ml_model_audit AS
SELECT v.model_name,
       v.version,
       m.version IS NOT NULL                AS in_use,
       v.algorithm,
       v.trained_by,
       v.created_at,
       v.source,
       v.features,
       v.target,
       v.training_rows,
       v.training_range,
       v.metrics,
       v.parameters,
       v.library_versions,
       v.model_sha256,
       octet_length(v.model_data)          AS model_bytes,
       coalesce((SELECT jsonb_agg(jsonb_build_object('deployed_at', d.deployed_at, 'deployed_by', d.deployed_by)
                                  ORDER BY d.deployed_at)
                   FROM ml_model_deployments d
                  WHERE d.model_name = v.model_name AND d.version = v.version), '[]') AS deployments
  FROM ml_model_versions v
  LEFT JOIN ml_models m ON m.model_name = v.model_name AND m.version = v.version;
