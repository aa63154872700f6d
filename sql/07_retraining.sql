-- 07 — retraining: versions instead of overwrites, promote and roll back, a drift check that
-- decides whether to retrain, and a log of every decision (pg_cron runs it on a schedule).
-- Apply with: psql "$DATABASE_URL" -f sql/07_retraining.sql      (idempotent; needs sql/02 and sql/04 first)
-- Then:       SELECT * FROM ml_model_history WHERE model_name = 'purchase_predictor' ORDER BY version;
--             SELECT * FROM retrain_if_drifted(1.5);
--
-- The talk retrains with   UPDATE ml_models SET model_data = train_model() WHERE model_name = 'purchase_predictor';
-- sql/04's trigger already turns that overwrite into a new registered version and logs the
-- deployment, so nothing here changes the talk's statement; this file adds the tools around it.

-- @block ml_model_history
-- Every version of every model, with its holdout metrics and whether it is the one in use.
-- A view rather than a function: filter and sort it like any table.
CREATE OR REPLACE VIEW ml_model_history AS
SELECT v.model_name,
       v.version,
       m.version IS NOT NULL                 AS deployed,
       v.algorithm,
       v.source,
       v.training_rows,
       (v.metrics ->> 'r2')::float8          AS r2,
       (v.metrics ->> 'mae')::float8         AS mae,
       coalesce(d.times_deployed, 0)         AS times_deployed,
       d.last_deployed_at,
       v.created_at,
       v.trained_by
  FROM ml_model_versions v
  LEFT JOIN ml_models m ON m.model_name = v.model_name AND m.version = v.version
  LEFT JOIN (SELECT model_name, version, count(*) AS times_deployed, max(deployed_at) AS last_deployed_at
               FROM ml_model_deployments GROUP BY model_name, version) d
         ON d.model_name = v.model_name AND d.version = v.version;

-- @block ml_promote
-- Deploy a registered version: the INSERT ... SELECT FROM ml_model_versions pattern of sql/04,
-- with errors that name what exists. sql/04's trigger logs the deployment in ml_model_deployments.
-- The advisory lock serialises promote/rollback/retrain of one model, so two of them cannot
-- interleave their "which version is deployed now?" reads.
CREATE OR REPLACE FUNCTION ml_promote(model_name text, version integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    known text;
BEGIN
    IF ml_promote.model_name IS NULL OR ml_promote.version IS NULL THEN
        RAISE EXCEPTION 'ml_promote needs a model name and a version (got %, %)', ml_promote.model_name, ml_promote.version
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'For example: SELECT ml_promote(''purchase_predictor'', 1);';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('ml_models:' || ml_promote.model_name));

    IF NOT EXISTS (SELECT FROM ml_model_versions v WHERE v.model_name = ml_promote.model_name) THEN
        SELECT string_agg(DISTINCT v.model_name, ', ') INTO known FROM ml_model_versions v;
        RAISE EXCEPTION 'no model named % is registered', quote_literal(ml_promote.model_name)
            USING ERRCODE = 'no_data_found',
                  HINT = coalesce('Registered models: ' || known || '.', 'No model is registered yet: SELECT train_purchase_model();');
    END IF;
    IF NOT EXISTS (SELECT FROM ml_model_versions v
                    WHERE v.model_name = ml_promote.model_name AND v.version = ml_promote.version) THEN
        SELECT string_agg(v.version::text, ', ' ORDER BY v.version) INTO known
          FROM ml_model_versions v WHERE v.model_name = ml_promote.model_name;
        RAISE EXCEPTION 'model % has no version %', quote_literal(ml_promote.model_name), ml_promote.version
            USING ERRCODE = 'no_data_found',
                  HINT = format('Its versions are %s; SELECT * FROM ml_model_history WHERE model_name = %L shows their metrics.',
                                known, ml_promote.model_name);
    END IF;

    IF EXISTS (SELECT FROM ml_models m
                WHERE m.model_name = ml_promote.model_name AND m.version = ml_promote.version) THEN
        RAISE NOTICE 'model % version % is already deployed', quote_literal(ml_promote.model_name), ml_promote.version;
        RETURN ml_promote.version;
    END IF;

    INSERT INTO ml_models (model_name, model_data, version)
    SELECT v.model_name, v.model_data, v.version
      FROM ml_model_versions v
     WHERE v.model_name = ml_promote.model_name AND v.version = ml_promote.version;
    RETURN ml_promote.version;
END;
$$;

-- @block ml_rollback
-- Undo the last deployment: deploy the version that was in use before the current one, read
-- from ml_model_deployments. Like `cd -`, a second rollback undoes the first; to go further
-- back, pick a version from ml_model_history and ml_promote it.
CREATE OR REPLACE FUNCTION ml_rollback(model_name text)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    current_version  integer;
    current_since    bigint;
    previous_version integer;
BEGIN
    IF ml_rollback.model_name IS NULL THEN
        RAISE EXCEPTION 'ml_rollback needs a model name'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'For example: SELECT ml_rollback(''purchase_predictor'');';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('ml_models:' || ml_rollback.model_name));
    SELECT m.version INTO current_version FROM ml_models m WHERE m.model_name = ml_rollback.model_name;
    IF current_version IS NULL THEN
        IF EXISTS (SELECT FROM ml_model_versions v WHERE v.model_name = ml_rollback.model_name) THEN
            RAISE EXCEPTION 'model % is registered but not deployed, so there is nothing to roll back',
                quote_literal(ml_rollback.model_name)
                USING ERRCODE = 'no_data_found',
                      HINT = 'Deploy a version first: SELECT ml_promote(name, version);';
        END IF;
        RAISE EXCEPTION 'no model named % is registered', quote_literal(ml_rollback.model_name)
            USING ERRCODE = 'no_data_found',
                  HINT = coalesce('Registered models: ' || (SELECT string_agg(DISTINCT v.model_name, ', ')
                                                              FROM ml_model_versions v) || '.',
                                  'No model is registered yet: SELECT train_purchase_model();');
    END IF;

    -- When did the current version go live? (A row deployed before the registry existed has no log entry.)
    SELECT max(d.deployment_id) INTO current_since
      FROM ml_model_deployments d
     WHERE d.model_name = ml_rollback.model_name AND d.version = current_version;
    SELECT d.version INTO previous_version
      FROM ml_model_deployments d
     WHERE d.model_name = ml_rollback.model_name
       AND d.version <> current_version
       AND (current_since IS NULL OR d.deployment_id < current_since)
     ORDER BY d.deployment_id DESC
     LIMIT 1;
    IF previous_version IS NULL THEN
        RAISE EXCEPTION 'model % has no earlier deployment to roll back to (version % is the first one deployed)',
            quote_literal(ml_rollback.model_name), current_version
            USING ERRCODE = 'no_data_found',
                  HINT = 'ml_promote(name, version) deploys any registered version; ml_model_history lists them.';
    END IF;
    RETURN ml_promote(ml_rollback.model_name, previous_version);
END;
$$;

-- @block ml_retraining_log
-- One row per decision of retrain_if_drifted, whoever ran it (you, or pg_cron every five minutes):
-- what it measured, what it decided and why. Versions it did not deploy are not registered,
-- so a job that keeps refusing does not fill the registry with models nobody uses.
CREATE TABLE IF NOT EXISTS ml_retraining_log (
    log_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    checked_at       timestamptz      NOT NULL DEFAULT clock_timestamp(),
    model_name       text             NOT NULL,
    deployed_version integer,                    -- in use when the check ran
    threshold        double precision NOT NULL,  -- drift ratio that triggers a retrain
    recent_rows      integer,                    -- labelled rows the drift check looked at
    recent_mae       double precision,           -- the deployed model's MAE on them
    holdout_mae      double precision,           -- its MAE on its own holdout, from the registry
    drift_ratio      double precision,           -- recent_mae / holdout_mae
    window_rows      integer,                    -- newest rows the candidate was trained on
    candidate_mae    double precision,           -- candidate's MAE on the new holdout
    deployed_holdout_mae double precision,       -- the deployed model's MAE on that same holdout
    new_version      integer,                    -- registered and deployed, when promoted
    decision         text             NOT NULL CHECK (decision IN ('no drift', 'promoted', 'refused', 'skipped')),
    reason           text             NOT NULL,
    run_by           text             NOT NULL DEFAULT current_user
);

-- @block purchase_model_drift
-- Has the world moved away from the deployed model? The check compares the model's MAE on the
-- newest labelled rows with the MAE it had on its own holdout when it was trained (stored in
-- the registry): a ratio near 1 means "as good as the day it was trained"; 3 means three times
-- worse. It measures what matters (prediction error), so it catches a changed relationship
-- between features and purchases that feature statistics cannot see. It needs labels; the
-- label-free signal out_of_range_share (inputs outside the training range) is reported too.
CREATE OR REPLACE FUNCTION purchase_model_drift(model text DEFAULT 'purchase_predictor',
                                                recent_rows integer DEFAULT 2000)
RETURNS TABLE (model_name text, version integer, rows_checked integer, holdout_mae double precision,
               recent_mae double precision, drift_ratio double precision, out_of_range_share double precision)
LANGUAGE plpython3u
AS $$
import json
import numpy as np

DEFAULT_FEATURES = ["age", "income", "credit_score"]
if recent_rows is None or recent_rows < 1:
    plpy.error(f"recent_rows must be 1 or more, got {'NULL' if recent_rows is None else recent_rows}",
               hint="For example: SELECT * FROM purchase_model_drift('purchase_predictor', 2000);",
               sqlstate="22023")

if "plans" not in SD:          # prepared once per session (SD is reset when the function is replaced)
    SD["plans"] = (
        plpy.prepare("SELECT ml_load_model($1) AS version", ["text"]),
        plpy.prepare("SELECT features, metrics, training_range FROM ml_model_versions"
                     " WHERE model_name = $1 AND version = $2", ["text", "integer"]),
        # The newest rows with a real purchase amount; ::float8 so Python gets floats, not Decimal.
        plpy.prepare("SELECT age::float8 AS age, income::float8 AS income, credit_score::float8 AS credit_score,"
                     " purchase_amount::float8 AS purchase_amount FROM customer_data"
                     " WHERE age IS NOT NULL AND income IS NOT NULL AND credit_score IS NOT NULL"
                     " AND purchase_amount IS NOT NULL ORDER BY id DESC LIMIT $1", ["integer"]))
load_plan, meta_plan, rows_plan = SD["plans"]

version = load_plan.execute([model])[0]["version"]          # loads it into GD if needed
estimator = GD["ml_models"][(model, version)]
meta = meta_plan.execute([model, version])[0]
features = list(meta["features"] or getattr(estimator, "feature_names_in_", DEFAULT_FEATURES))
if sorted(features) != sorted(DEFAULT_FEATURES):
    plpy.error(f"model {model!r} version {version} uses features {features}; this check knows {DEFAULT_FEATURES}")
metrics = json.loads(meta["metrics"]) if meta["metrics"] else {}
holdout_mae = metrics.get("mae")

rows = rows_plan.execute([recent_rows])
if rows.nrows() == 0:
    return [(model, version, 0, holdout_mae, None, None, None)]
X = np.array([[r[f] for f in features] for r in rows], dtype=np.float64)
y = np.array([r["purchase_amount"] for r in rows], dtype=np.float64)
if hasattr(estimator, "feature_names_in_"):          # fitted on a DataFrame (the talk's train_model)
    import pandas as pd
    X_in = pd.DataFrame(X, columns=features)
else:
    X_in = X
recent_mae = float(np.mean(np.abs(y - estimator.predict(X_in))))

out_of_range = None
if meta["training_range"]:
    bounds = json.loads(meta["training_range"])
    outside = np.zeros(len(X), dtype=bool)
    for i, f in enumerate(features):
        low, high = bounds[f]
        outside |= (X[:, i] < low) | (X[:, i] > high)
    out_of_range = float(outside.mean())

ratio = recent_mae / holdout_mae if holdout_mae else None
return [(model, version, len(y), holdout_mae, recent_mae, ratio, out_of_range)]
$$;

-- @block retrain_if_drifted
-- The decision a scheduler runs: check drift; if the ratio exceeds the threshold (or the deployed
-- version has no holdout metrics to compare with), train a candidate with the same recipe as the
-- deployed model (sklearn.base.clone: same algorithm and hyperparameters) on the newest
-- window_rows rows, and deploy it only if it is not worse than the deployed model on the same
-- holdout (tolerance: up to 1% worse counts as equal — noise, not a regression; it also lets a
-- measured candidate replace an unmeasured twin, whose holdout rows it may have trained on).
-- Every run, whatever it decides, leaves one row in ml_retraining_log; the row is returned.
-- window_rows NULL trains on all rows, as the talk does ("new + existing"); after a real change
-- in the world a window of recent rows learns the new relationship instead of an average of both.
CREATE OR REPLACE FUNCTION retrain_if_drifted(
    threshold double precision DEFAULT 1.5,
    model text DEFAULT 'purchase_predictor',
    recent_rows integer DEFAULT 2000,
    window_rows integer DEFAULT NULL,
    holdout_fraction double precision DEFAULT 0.2,
    seed integer DEFAULT 42,
    tolerance double precision DEFAULT 0.01)
RETURNS ml_retraining_log
LANGUAGE plpython3u
AS $$
import json, pickle
import numpy as np
from sklearn.base import clone
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import train_test_split

MIN_CHECK_ROWS = 30      # fewer labelled rows than this say nothing reliable about drift
MIN_TRAIN_ROWS = 50
TARGET = "purchase_amount"

def shown(value):
    return "NULL" if value is None else f"{value:g}"

if threshold is None or threshold <= 0:
    plpy.error(f"threshold must be a positive ratio, got {shown(threshold)}", sqlstate="22023",
               hint="1.5 retrains when the recent error is 50% above the holdout error: SELECT retrain_if_drifted(1.5);")
if window_rows is not None and window_rows < MIN_TRAIN_ROWS:
    plpy.error(f"window_rows must be at least {MIN_TRAIN_ROWS} (or NULL for all rows), got {window_rows}",
               sqlstate="22023")
if holdout_fraction is None or not 0 < holdout_fraction < 1:
    plpy.error(f"holdout_fraction must be between 0 and 1, got {shown(holdout_fraction)}", sqlstate="22023")
if tolerance is None or not 0 <= tolerance < 1:
    plpy.error(f"tolerance must be between 0 and 1, got {shown(tolerance)}", sqlstate="22023",
               hint="0.01 lets a candidate up to 1% worse than the deployed model replace it (noise, not a regression).")

# One decision per model at a time: a manual run and the cron job queue up instead of racing.
plpy.execute(plpy.prepare("SELECT pg_advisory_xact_lock(hashtext('retrain_if_drifted:' || $1))", ["text"]), [model])

log_plan = plpy.prepare(
    "INSERT INTO ml_retraining_log (model_name, deployed_version, threshold, recent_rows, recent_mae, holdout_mae,"
    " drift_ratio, window_rows, candidate_mae, deployed_holdout_mae, new_version, decision, reason)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING *",
    ["text", "integer", "float8", "integer", "float8", "float8", "float8", "integer", "float8", "float8",
     "integer", "text", "text"])
drift = plpy.execute(plpy.prepare("SELECT * FROM purchase_model_drift($1, $2)", ["text", "integer"]),
                     [model, recent_rows])[0]
deployed_version = drift["version"]

def log(decision, reason, window=None, candidate_mae=None, deployed_mae=None, new_version=None):
    return log_plan.execute([model, deployed_version, threshold, drift["rows_checked"], drift["recent_mae"],
                             drift["holdout_mae"], drift["drift_ratio"], window, candidate_mae, deployed_mae,
                             new_version, decision, reason])[0]

if drift["rows_checked"] < MIN_CHECK_ROWS:
    return log("skipped", f"only {drift['rows_checked']} labelled rows to check; at least {MIN_CHECK_ROWS} are needed")
if drift["holdout_mae"] is None:
    why = (f"version {deployed_version} has no holdout metrics (its bytes were written straight into ml_models), "
           "so there is no baseline: training a measured candidate")
elif drift["drift_ratio"] <= threshold:
    return log("no drift", f"recent MAE {drift['recent_mae']:.1f} is {drift['drift_ratio']:.2f}x the holdout MAE "
                           f"{drift['holdout_mae']:.1f}, within the threshold {threshold:g}")
else:
    why = (f"recent MAE {drift['recent_mae']:.1f} is {drift['drift_ratio']:.2f}x the holdout MAE "
           f"{drift['holdout_mae']:.1f}, above the threshold {threshold:g}")

# The candidate: same recipe as the deployed model, fitted on the newest rows.
deployed = GD["ml_models"][(model, deployed_version)]      # loaded by purchase_model_drift
meta = plpy.execute(plpy.prepare("SELECT features FROM ml_model_versions WHERE model_name = $1 AND version = $2",
                                 ["text", "integer"]), [model, deployed_version])[0]
features = list(meta["features"] or getattr(deployed, "feature_names_in_", ["age", "income", "credit_score"]))
rows = plpy.execute(plpy.prepare(
    "SELECT * FROM (SELECT id, age::float8 AS age, income::float8 AS income, credit_score::float8 AS credit_score,"
    " purchase_amount::float8 AS purchase_amount FROM customer_data"
    " WHERE age IS NOT NULL AND income IS NOT NULL AND credit_score IS NOT NULL AND purchase_amount IS NOT NULL"
    " ORDER BY id DESC LIMIT $1) AS newest ORDER BY id", ["bigint"]), [window_rows])   # LIMIT NULL = all rows
if rows.nrows() < MIN_TRAIN_ROWS:
    return log("skipped", f"{why}; but only {rows.nrows()} labelled rows to train on, at least {MIN_TRAIN_ROWS} are needed",
               window=rows.nrows())
X = np.array([[r[f] for f in features] for r in rows], dtype=np.float64)
y = np.array([r[TARGET] for r in rows], dtype=np.float64)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=holdout_fraction, random_state=seed)

candidate = clone(deployed).fit(X_train, y_train)
candidate_mae = float(mean_absolute_error(y_test, candidate.predict(X_test)))
if hasattr(deployed, "feature_names_in_"):
    import pandas as pd
    deployed_pred = deployed.predict(pd.DataFrame(X_test, columns=features))
else:
    deployed_pred = deployed.predict(X_test)
deployed_mae = float(mean_absolute_error(y_test, deployed_pred))

if candidate_mae > deployed_mae * (1 + tolerance):
    return log("refused", f"{why}; but the candidate's holdout MAE {candidate_mae:.1f} is worse than the deployed "
                          f"version's {deployed_mae:.1f} on the same {len(y_test)} rows (tolerance {tolerance:.0%}): "
                          f"kept version {deployed_version}",
               window=len(y), candidate_mae=candidate_mae, deployed_mae=deployed_mae)

metrics = {"r2": float(r2_score(y_test, candidate.predict(X_test))), "mae": candidate_mae,
           "holdout_rows": int(len(y_test)), "replaced_version": deployed_version,
           "replaced_version_mae": deployed_mae}
parameters = None
if hasattr(candidate, "coef_"):
    parameters = {"intercept": float(candidate.intercept_),
                  "coefficients": dict(zip(features, map(float, candidate.coef_)))}
training_range = {f: [float(X_train[:, i].min()), float(X_train[:, i].max())] for i, f in enumerate(features)}
# Lock the model's row before registering: a concurrent write to it (the talk's UPDATE) then waits for this
# transaction instead of holding the row while it waits for the registry's lock, which would deadlock.
plpy.execute(plpy.prepare("SELECT FROM ml_models WHERE model_name = $1 FOR UPDATE", ["text"]), [model])
new_version = plpy.execute(plpy.prepare(
    "SELECT register_model_version($1, $2, 'retrain_if_drifted', $3, $4, $5, $6, $7, $8, $9) AS version",
    ["text", "bytea", "text", "text[]", "text", "bigint", "jsonb", "jsonb", "jsonb"]),
    [model, pickle.dumps(candidate), type(candidate).__name__, features, TARGET, len(y_train),
     json.dumps(training_range), json.dumps(metrics), json.dumps(parameters) if parameters else None])[0]["version"]
plpy.execute(plpy.prepare("SELECT ml_promote($1, $2)", ["text", "integer"]), [model, new_version])
return log("promoted", f"{why}; the candidate's holdout MAE {candidate_mae:.1f} is not worse than the deployed "
                       f"version's {deployed_mae:.1f} on the same {len(y_test)} rows (tolerance {tolerance:.0%}): "
                       f"deployed version {new_version}",
           window=len(y), candidate_mae=candidate_mae, deployed_mae=deployed_mae, new_version=new_version)
$$;

-- @block privileges
-- These functions change which model every session uses, and model bytes are unpickled by the
-- server: only roles you grant them to may call them (superusers always can).
REVOKE EXECUTE ON FUNCTION ml_promote(text, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ml_rollback(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION retrain_if_drifted(double precision, text, integer, integer, double precision, integer,
                                                double precision) FROM PUBLIC;
