-- 04 — training in the database: the talk's train_model() and ml_models, then a proper registry.
-- Apply with: psql "$DATABASE_URL" -f sql/04_training.sql      (idempotent; needs sql/02 first)
-- Then:       SELECT train_purchase_model();       -- trains, registers and deploys version N

-- @block ml_models
-- The talk's table, as on the slide. The registry below adds columns to it; it renames nothing.
CREATE TABLE IF NOT EXISTS ml_models (
    id SERIAL PRIMARY KEY,
    model_name TEXT,
    model_data bytea
);

-- @block train_model_as_on_the_slide
-- The talk's function, character for character. On the kit's pandas (3.x) it fails at
-- pd.DataFrame(data): the query result is a PLyResult, which has no __iter__, so pandas'
-- is_list_like() takes it for a scalar ("DataFrame constructor not properly called!").
CREATE OR REPLACE FUNCTION train_model()
RETURNS bytea AS $$
    import pandas as pd
    from sklearn.linear_model import LinearRegression
    import pickle

    # Fetch data from the database
    data = plpy.execute("SELECT age, income, credit_score, purchase_amount FROM customer_data")
    df = pd.DataFrame(data)

    # Prepare features and target
    X = df[['age', 'income', 'credit_score']]
    y = df['purchase_amount']

    # Train the model
    model = LinearRegression()
    model.fit(X, y)

    # Serialize the model
    return pickle.dumps(model)
$$ LANGUAGE plpython3u;

-- @block train_model
-- The talk's function with one line fixed: list(data) turns the PLyResult into a list of dicts,
-- and dropna() leaves out rows with a NULL — customers inserted without a purchase_amount (the
-- talk's INSERT in notebook 06) are no training examples, and one NaN target stops fit().
-- (income and purchase_amount arrive as decimal.Decimal; fit() copes, predict() will not — see 05.)
CREATE OR REPLACE FUNCTION train_model()
RETURNS bytea AS $$
    import pandas as pd
    from sklearn.linear_model import LinearRegression
    import pickle

    # Fetch data from the database
    data = plpy.execute("SELECT age, income, credit_score, purchase_amount FROM customer_data")
    df = pd.DataFrame(list(data)).dropna()   # fix: a list for pandas 3; skip rows with NULLs

    # Prepare features and target
    X = df[['age', 'income', 'credit_score']]
    y = df['purchase_amount']

    # Train the model
    model = LinearRegression()
    model.fit(X, y)

    # Serialize the model
    return pickle.dumps(model)
$$ LANGUAGE plpython3u;

-- @block ml_library_versions
-- Which libraries the server runs right now: stored with every model, checked before loading one.
CREATE OR REPLACE FUNCTION ml_library_versions()
RETURNS jsonb
LANGUAGE plpython3u STABLE
AS $$
import json, sys
from importlib import metadata
versions = {"python": "%d.%d.%d" % sys.version_info[:3]}
for name in ("scikit-learn", "numpy", "scipy", "pandas", "joblib"):
    versions[name] = metadata.version(name)
return json.dumps(versions)
$$;

-- @block registry
-- The registry: every model version is an immutable row; ml_models keeps one row per model
-- name, the version in use; every change of that version is logged in ml_model_deployments.
CREATE TABLE IF NOT EXISTS ml_model_versions (
    model_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_name       text        NOT NULL,
    version          integer     NOT NULL,
    model_data       bytea       NOT NULL,
    model_sha256     text        NOT NULL,   -- hex digest of model_data, checked before unpickling
    algorithm        text,                   -- e.g. LinearRegression
    features         text[],                 -- in the order the model expects them
    target           text,
    training_rows    bigint,
    training_range   jsonb,                  -- {"age": [min, max], ...}: flags out-of-range inputs
    metrics          jsonb,                  -- holdout {"r2": .., "mae": .., "holdout_rows": ..}
    parameters       jsonb,                  -- learned coefficients (linear models), hyperparameters, the split
    library_versions jsonb       NOT NULL,   -- what trained it; loading checks the server matches
    created_at       timestamptz NOT NULL DEFAULT now(),
    trained_by       text        NOT NULL DEFAULT current_user,
    source           text        NOT NULL,   -- train_purchase_model, or a direct write to ml_models
    UNIQUE (model_name, version)
);

CREATE TABLE IF NOT EXISTS ml_model_deployments (
    deployment_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_name    text        NOT NULL,
    version       integer     NOT NULL,
    deployed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    deployed_by   text        NOT NULL DEFAULT current_user,
    FOREIGN KEY (model_name, version) REFERENCES ml_model_versions (model_name, version)
);

ALTER TABLE ml_models ADD COLUMN IF NOT EXISTS version integer;
ALTER TABLE ml_models ADD COLUMN IF NOT EXISTS deployed_at timestamptz;

-- Versions and deployments are history: rows may be added, never changed. (Deleting stays
-- possible for the tables' owner — to forget a model for good — and is a visible act.)
CREATE OR REPLACE FUNCTION ml_model_versions_immutable()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION '% rows are immutable (model %, version %)', TG_TABLE_NAME, OLD.model_name, OLD.version
        USING HINT = 'Train or write a new version instead; deploy an older one with ml_promote(name, version).';
END;
$$;
DROP TRIGGER IF EXISTS ml_model_versions_immutable ON ml_model_versions;
CREATE TRIGGER ml_model_versions_immutable
    BEFORE UPDATE ON ml_model_versions
    FOR EACH ROW EXECUTE FUNCTION ml_model_versions_immutable();
DROP TRIGGER IF EXISTS ml_model_deployments_immutable ON ml_model_deployments;
CREATE TRIGGER ml_model_deployments_immutable
    BEFORE UPDATE ON ml_model_deployments
    FOR EACH ROW EXECUTE FUNCTION ml_model_versions_immutable();

-- @block register_model_version
-- Add bytes as the next version of a model. The advisory lock serialises two trainers of the
-- same model, so versions never collide: the second waits for the first to commit, and its
-- max(version) (a new snapshot, READ COMMITTED) then sees the first one's row.
CREATE OR REPLACE FUNCTION register_model_version(
    p_model_name text, p_model_data bytea, p_source text,
    p_algorithm text DEFAULT NULL, p_features text[] DEFAULT NULL, p_target text DEFAULT NULL,
    p_training_rows bigint DEFAULT NULL, p_training_range jsonb DEFAULT NULL,
    p_metrics jsonb DEFAULT NULL, p_parameters jsonb DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    new_version integer;
    max_bytes   bigint;
BEGIN
    IF p_model_data IS NULL THEN
        RAISE EXCEPTION 'model % has no bytes to register', p_model_name
            USING HINT = 'Pass the output of a training function, e.g. train_model().';
    END IF;
    -- sql/09 (when applied) caps a model's size: every session that loads it holds it in memory.
    IF to_regclass('public.ml_registry_limits') IS NOT NULL THEN
        EXECUTE 'SELECT max_model_bytes FROM public.ml_registry_limits' INTO max_bytes;
        IF octet_length(p_model_data) > max_bytes THEN
            RAISE EXCEPTION 'model % is % bytes, more than max_model_bytes (% bytes)',
                p_model_name, octet_length(p_model_data), max_bytes
                USING ERRCODE = 'program_limit_exceeded',
                      HINT = 'Train a smaller model (fewer or shallower trees), or raise the limit: UPDATE ml_registry_limits SET max_model_bytes = ...;';
        END IF;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('ml_model_versions:' || p_model_name));
    SELECT coalesce(max(version), 0) + 1 INTO new_version
      FROM ml_model_versions WHERE model_name = p_model_name;
    INSERT INTO ml_model_versions (model_name, version, model_data, model_sha256, algorithm, features,
                                   target, training_rows, training_range, metrics, parameters,
                                   library_versions, source)
    VALUES (p_model_name, new_version, p_model_data, encode(sha256(p_model_data), 'hex'), p_algorithm,
            p_features, p_target, p_training_rows, p_training_range, p_metrics, p_parameters,
            ml_library_versions(), p_source);
    -- sql/09 (when applied) signs every version registered here, with a key only superusers can
    -- read; ml_load_model then refuses bytes without a valid signature.
    IF to_regnamespace('ml_private') IS NOT NULL
       AND to_regprocedure('ml_private.sign_model_version(text,integer)') IS NOT NULL THEN
        EXECUTE 'SELECT ml_private.sign_model_version($1, $2)' USING p_model_name, new_version;
    END IF;
    RETURN new_version;
END;
$$;

-- @block ml_models_versioned
-- Keep the talk's statements working *and* keep history: any bytes written straight into
-- ml_models (the talk's INSERT, or UPDATE ... SET model_data = train_model()) become a new
-- registered version; an INSERT for a name that exists becomes an update of that row; an
-- UPDATE of only the version deploys that registered version; every change of the version in
-- use is logged. The trigger never unpickles anything: it cannot know what the bytes contain.
CREATE OR REPLACE FUNCTION ml_models_versioned()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.model_data IS NOT DISTINCT FROM OLD.model_data
                        AND NEW.version IS NOT DISTINCT FROM OLD.version THEN
        RETURN NEW;                                   -- nothing about the model changed
    END IF;
    IF NEW.model_name IS NULL OR NEW.model_data IS NULL THEN
        RAISE EXCEPTION 'ml_models needs both model_name and model_data (got name %, % bytes)',
            coalesce(NEW.model_name, 'NULL'), coalesce(octet_length(NEW.model_data)::text, 'NULL')
            USING HINT = 'INSERT INTO ml_models (model_name, model_data) VALUES (''purchase_predictor'', train_model());';
    END IF;
    -- Two sessions writing the same new name: the second waits here, then sees the first's row
    -- and takes the UPDATE path below instead of failing on the unique index.
    PERFORM pg_advisory_xact_lock(hashtext('ml_model_versions:' || NEW.model_name));
    IF TG_OP = 'UPDATE' AND NEW.model_data IS NOT DISTINCT FROM OLD.model_data THEN
        -- Only the version changed (UPDATE ml_models SET version = 3 ...): deploy that version's bytes.
        SELECT v.model_data INTO NEW.model_data
          FROM ml_model_versions v WHERE v.model_name = NEW.model_name AND v.version = NEW.version;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'model % has no version %', NEW.model_name, coalesce(NEW.version::text, 'NULL')
                USING HINT = format('See its versions: SELECT version, created_at, metrics FROM ml_model_versions WHERE model_name = %L;',
                                    NEW.model_name);
        END IF;
    END IF;
    -- Is this exactly a registered version (a deployment)? If not, register the bytes.
    IF NEW.version IS NULL OR NOT EXISTS (
        SELECT FROM ml_model_versions v
         WHERE v.model_name = NEW.model_name AND v.version = NEW.version
           AND v.model_sha256 = encode(sha256(NEW.model_data), 'hex')) THEN
        NEW.version := register_model_version(NEW.model_name, NEW.model_data, 'direct write to ml_models');
    END IF;
    IF TG_OP = 'INSERT' AND EXISTS (SELECT FROM ml_models WHERE model_name = NEW.model_name) THEN
        UPDATE ml_models SET model_data = NEW.model_data, version = NEW.version
         WHERE model_name = NEW.model_name;          -- this update logs the deployment
        RETURN NULL;                                  -- one row per model name
    END IF;
    NEW.deployed_at := clock_timestamp();
    INSERT INTO ml_model_deployments (model_name, version) VALUES (NEW.model_name, NEW.version);
    RETURN NEW;
END;
$$;

-- Rows written before the registry existed (the talk's INSERT, run once or more) become
-- versions 1, 2, ... in id order, and ml_models keeps the newest one per name — logged as
-- deployed, since it is the one in use: nothing is lost.
DO $$
DECLARE
    r record;
    registered integer[] := '{}';
BEGIN
    FOR r IN SELECT id, model_name, model_data FROM ml_models WHERE version IS NULL ORDER BY id LOOP
        IF r.model_data IS NOT NULL AND r.model_name IS NOT NULL THEN
            UPDATE ml_models
               SET version = register_model_version(r.model_name, r.model_data, 'written before the registry'),
                   deployed_at = now()
             WHERE id = r.id;
            registered := registered || r.id;
        END IF;
    END LOOP;
    DELETE FROM ml_models older USING ml_models newer
     WHERE older.model_name = newer.model_name AND older.id < newer.id;
    INSERT INTO ml_model_deployments (model_name, version)
    SELECT model_name, version FROM ml_models WHERE id = ANY (registered) ORDER BY id;
END;
$$;
CREATE UNIQUE INDEX IF NOT EXISTS ml_models_model_name_key ON ml_models (model_name);
DROP TRIGGER IF EXISTS ml_models_versioned ON ml_models;
CREATE TRIGGER ml_models_versioned
    BEFORE INSERT OR UPDATE ON ml_models
    FOR EACH ROW EXECUTE FUNCTION ml_models_versioned();

-- @block train_purchase_model
-- The kit's training function: features as float8 (no Decimal), a seeded holdout split,
-- metrics on rows the model never saw, and everything an auditor needs, in one registry row.
-- algorithm: linear | decision_tree | random_forest | gradient_boosting | mlp
-- params:    estimator arguments as JSON, e.g. '{"n_estimators": 100, "max_depth": 12}'
-- max_rows:  train on the first max_rows complete rows (by id) only — for quick experiments
CREATE OR REPLACE FUNCTION train_purchase_model(
    model_name text DEFAULT 'purchase_predictor',
    algorithm text DEFAULT 'linear',
    promote boolean DEFAULT true,
    params jsonb DEFAULT '{}',
    holdout_fraction double precision DEFAULT 0.2,
    seed integer DEFAULT 42,
    max_rows integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpython3u
AS $$
import json, pickle, time
import numpy as np
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import train_test_split

FEATURES = ["age", "income", "credit_score"]
TARGET = "purchase_amount"
ALGORITHMS = ("linear", "decision_tree", "random_forest", "gradient_boosting", "mlp")
USAGE = "For example: SELECT train_purchase_model('purchase_predictor', 'linear');"
BAD_ARGUMENT = "22023"     # invalid_parameter_value: callers can catch it by SQLSTATE

# Arguments first: a NULL seed would make the split (and the metrics) unrepeatable without a word.
if not model_name:
    plpy.error("train_purchase_model: model_name must not be NULL or empty", hint=USAGE, sqlstate=BAD_ARGUMENT)
if algorithm not in ALGORITHMS:
    plpy.error(f"unknown algorithm {algorithm!r}", hint="Use one of: " + ", ".join(ALGORITHMS) + ".",
               sqlstate=BAD_ARGUMENT)
if promote is None or seed is None:
    plpy.error("train_purchase_model: promote and seed must not be NULL", hint=USAGE, sqlstate=BAD_ARGUMENT)
if holdout_fraction is None or not 0 < holdout_fraction < 1:
    plpy.error(f"holdout_fraction must be between 0 and 1 (exclusive), got {holdout_fraction}",
               hint="0.2 keeps a fifth of the rows aside to measure the model on data it never saw.",
               sqlstate=BAD_ARGUMENT)
if max_rows is not None and max_rows < 10:
    plpy.error(f"max_rows must be NULL (all rows) or at least 10, got {max_rows}",
               hint="max_rows => 10000 trains on the first 10000 rows (by id).", sqlstate=BAD_ARGUMENT)
options = json.loads(params) if params else {}
if not isinstance(options, dict):
    plpy.error(f"params must be a JSON object, got {params}", hint="""For example: '{"max_depth": 6}'""",
               sqlstate=BAD_ARGUMENT)

def make_estimator(kind, options):
    if kind == "linear":
        from sklearn.linear_model import LinearRegression
        return LinearRegression(**options)
    if kind == "decision_tree":
        from sklearn.tree import DecisionTreeRegressor
        return DecisionTreeRegressor(**{"max_depth": 8, "random_state": seed, **options})
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestRegressor
        return RandomForestRegressor(**{"n_estimators": 100, "max_depth": 10, "n_jobs": 1,
                                        "random_state": seed, **options})
    if kind == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingRegressor
        return HistGradientBoostingRegressor(**{"random_state": seed, **options})
    from sklearn.neural_network import MLPRegressor          # kind == "mlp"
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), MLPRegressor(**{"hidden_layer_sizes": (32, 16), "max_iter": 300,
                                                           "random_state": seed, **options}))

try:
    estimator = make_estimator(algorithm, options)
except TypeError as error:                                     # an unknown keyword in params
    plpy.error(f"params do not fit algorithm {algorithm!r}: {error}",
               hint="params are passed to the scikit-learn estimator; use its parameter names.",
               sqlstate=BAD_ARGUMENT)

# ::float8 in SQL, so Python gets floats instead of Decimal; ORDER BY id keeps the split reproducible.
limit = "" if max_rows is None else f" LIMIT {int(max_rows)}"
rows = plpy.execute(
    "SELECT id, age::float8 AS age, income::float8 AS income, credit_score::float8 AS credit_score,"
    " purchase_amount::float8 AS purchase_amount FROM customer_data"
    " WHERE age IS NOT NULL AND income IS NOT NULL AND credit_score IS NOT NULL AND purchase_amount IS NOT NULL"
    " ORDER BY id" + limit)
if rows.nrows() < 10:
    plpy.error(f"customer_data has {rows.nrows()} complete rows; at least 10 are needed to train and evaluate",
               hint="Load sample data first: SELECT load_sample_customers();",
               sqlstate="22000")                       # data_exception
X = np.array([[r[f] for f in FEATURES] for r in rows], dtype=np.float64)
y = np.array([r[TARGET] for r in rows], dtype=np.float64)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=holdout_fraction, random_state=seed)

started = time.perf_counter()
try:
    estimator.fit(X_train, y_train)
except (ValueError, TypeError) as error:                       # e.g. max_depth = -1 in params
    plpy.error(f"training {algorithm!r} failed: {error}",
               hint="Check the values in params against the scikit-learn estimator's documentation.",
               sqlstate=BAD_ARGUMENT)
fit_seconds = time.perf_counter() - started
predicted = estimator.predict(X_test)
metrics = {"r2": float(r2_score(y_test, predicted)), "mae": float(mean_absolute_error(y_test, predicted)),
           "holdout_rows": int(len(y_test)), "fit_seconds": round(fit_seconds, 4)}

# What an auditor needs to reproduce or judge the model, beyond the metrics:
# the settings (scalars only; a pipeline's nested objects are described by their own scalars),
# the split, and the last row read (customer_data keeps growing).
def plain(value):
    scalar = (bool, int, float, str, type(None))
    return isinstance(value, scalar) or (isinstance(value, (list, tuple)) and all(isinstance(v, scalar) for v in value))

parameters = {
    "hyperparameters": {k: v for k, v in sorted(estimator.get_params().items()) if plain(v)},
    "split": {"holdout_fraction": holdout_fraction, "seed": seed, "max_rows": max_rows,
              "last_id": int(rows[rows.nrows() - 1]["id"])},
}
if hasattr(estimator, "coef_"):
    parameters["intercept"] = float(estimator.intercept_)
    parameters["coefficients"] = dict(zip(FEATURES, map(float, estimator.coef_)))
training_range = {f: [float(X_train[:, i].min()), float(X_train[:, i].max())] for i, f in enumerate(FEATURES)}

register = plpy.prepare(
    "SELECT register_model_version($1, $2, 'train_purchase_model', $3, $4, $5, $6, $7, $8, $9) AS version",
    ["text", "bytea", "text", "text[]", "text", "bigint", "jsonb", "jsonb", "jsonb"])
version = register.execute([model_name, pickle.dumps(estimator), type(estimator).__name__, FEATURES, TARGET,
                            len(y_train), json.dumps(training_range), json.dumps(metrics),
                            json.dumps(parameters)])[0]["version"]
if promote:
    plpy.execute(plpy.prepare(
        "INSERT INTO ml_models (model_name, model_data, version)"
        " SELECT model_name, model_data, version FROM ml_model_versions WHERE model_name = $1 AND version = $2",
        ["text", "integer"]), [model_name, version])
return version
$$;

-- @block ml_load_model
-- Load the version in use of a model into this session's cache (GD, shared by all PL/Python
-- functions of the session) and return its version number. The bytes are unpickled only after
-- their digest and the library versions they were trained with have been checked. A cached
-- model is reused while the registry's digest for (name, version) is the one it was loaded
-- with, so a registry rebuilt under the same version numbers is never served from a stale cache.
-- Errors carry a SQLSTATE a caller can catch: P0002 (no_data_found) nothing deployed,
-- XX001 (data_corrupted) digest mismatch — or, once sql/09 configured a key, a missing or wrong
-- signature — and 55000 trained with another scikit-learn (or numpy, scipy).
CREATE OR REPLACE FUNCTION ml_load_model(p_model_name text)
RETURNS integer
LANGUAGE plpython3u
AS $$
import hashlib, json, pickle
from importlib import metadata

if p_model_name is None:
    plpy.error("ml_load_model: the model name is NULL", hint="For example: SELECT ml_load_model('purchase_predictor');",
               sqlstate="22004")                       # null_value_not_allowed
cache = GD.setdefault("ml_models", {})            # {(model_name, version): model}
digests = GD.setdefault("ml_models.sha256", {})   # {(model_name, version): sha256 it was loaded with}
plans = GD.get("ml_load_model.plans")
if plans is None:                                 # prepared once per session
    plans = GD["ml_load_model.plans"] = {
        "deployed": plpy.prepare(
            "SELECT m.version, v.model_sha256 FROM ml_models m"
            " LEFT JOIN ml_model_versions v ON v.model_name = m.model_name AND v.version = m.version"
            " WHERE m.model_name = $1", ["text"]),
        "bytes": plpy.prepare(
            "SELECT model_data, library_versions FROM ml_model_versions WHERE model_name = $1 AND version = $2",
            ["text", "integer"]),
    }

found = plans["deployed"].execute([p_model_name])
if not found or found[0]["version"] is None:
    plpy.error(f"no model named {p_model_name!r} is deployed",
               hint="Train and deploy one: SELECT train_purchase_model();",
               sqlstate="P0002")                       # no_data_found: a trigger can catch it and carry on
version, registered_sha256 = found[0]["version"], found[0]["model_sha256"]
if registered_sha256 is None:
    plpy.error(f"ml_models says model {p_model_name!r} version {version} is deployed, but the registry has no such version",
               hint="Deploy a registered version: INSERT INTO ml_models (model_name, model_data, version) "
                    "SELECT model_name, model_data, version FROM ml_model_versions WHERE ...;",
               sqlstate="P0002")
key = (p_model_name, version)
if key in cache and digests.get(key) == registered_sha256:
    return version                                # the fast path: one index lookup, no bytes read

row = plans["bytes"].execute([p_model_name, version])[0]
model_bytes = row["model_data"]
if hashlib.sha256(model_bytes).hexdigest() != registered_sha256:
    plpy.error(f"model {p_model_name!r} version {version}: bytes do not match their sha256 digest; refusing to unpickle",
               hint="The registry row was altered. Deploy a known-good version: SELECT ml_promote(name, version);",
               sqlstate="XX001")                       # data_corrupted
trained_with = json.loads(row["library_versions"])
running = metadata.version("scikit-learn")
if trained_with.get("scikit-learn") != running:
    plpy.error(f"model {p_model_name!r} version {version} was trained with scikit-learn "
               f"{trained_with.get('scikit-learn')}, this server runs {running}",
               hint="Pickles are only guaranteed to load in the version that wrote them: retrain with SELECT train_purchase_model();",
               sqlstate="55000")                       # object_not_in_prerequisite_state
for library in ("numpy", "scipy"):                     # what a pickled model's arrays are rebuilt with
    if library in trained_with and trained_with[library] != metadata.version(library):
        plpy.error(f"model {p_model_name!r} version {version} was trained with {library} "
                   f"{trained_with[library]}, this server runs {metadata.version(library)}",
                   hint="Run the same pins on every server (requirements/server.txt), or retrain here.",
                   sqlstate="55000")
# Last check before unpickling (the checks above read no pickle). A digest only proves the bytes
# are the ones registered, not who registered them: when sql/09 has configured a signing key,
# the bytes must also carry an HMAC made on the training path (XX001 if not).
if plpy.execute("SELECT to_regnamespace('ml_private') IS NOT NULL"
                " AND to_regprocedure('ml_private.model_signature_status(text,integer)') IS NOT NULL AS on")[0]["on"]:
    status = plpy.execute(plpy.prepare("SELECT ml_private.model_signature_status($1, $2) AS s", ["text", "integer"]),
                          [p_model_name, version])[0]["s"]
    if status not in ("valid", "no key"):
        plpy.error(f"model {p_model_name!r} version {version}: signature {status}; refusing to unpickle",
                   hint="Only the training path signs models: these bytes were written some other way. "
                        "Deploy a signed version: SELECT ml_promote(name, version);",
                   sqlstate="XX001")                   # data_corrupted
for old in [k for k in cache if k[0] == p_model_name]:
    del cache[old]                                # one version per name in memory
    digests.pop(old, None)
cache[key] = pickle.loads(model_bytes)
digests[key] = registered_sha256
return version
$$;

-- @block ml_cached_models
-- What this session has in its model cache: the proof that a second call did not load again,
-- and that a new deployment replaced the old version in memory.
CREATE OR REPLACE FUNCTION ml_cached_models()
RETURNS TABLE (model_name text, version integer, model_class text)
LANGUAGE plpython3u
AS $$
return [(name, version, type(model).__name__)
        for (name, version), model in sorted(GD.get("ml_models", {}).items())]
$$;
