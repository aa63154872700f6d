-- 06 — triggers: a prediction stored with every INSERT, row by row or one batch per statement;
-- failure-safe (the row is kept, the failure logged) or strict (the row is rejected); and the
-- talk's first use case, fraud detection on transactions, end to end with a classifier.
-- Apply with: psql "$DATABASE_URL" -f sql/06_triggers.sql      (idempotent; needs sql/02 and sql/04 first)
-- Applying it (again) leaves the talk's row trigger active; switch with
--             SELECT use_prediction_trigger('row' | 'statement' | 'none');

-- @block prediction_columns
-- Where the trigger writes. model_version makes every stored prediction attributable to the
-- registry version that produced it (sql/04), so a retrain never leaves you guessing.
ALTER TABLE customer_data
    ADD COLUMN IF NOT EXISTS predicted_purchase NUMERIC,
    ADD COLUMN IF NOT EXISTS model_version INTEGER;

-- @block talk_trigger
-- The slide shows only the trigger's purpose: "automatically calculate and store a prediction
-- when new data is inserted". Written out as directly as possible, with notebook 05's two
-- fixes (floats into scikit-learn, a Python float back out). Any error here aborts the INSERT:
-- no model deployed, a NULL feature, a model that no longer fits the table — the row is lost.
CREATE OR REPLACE FUNCTION predict_purchase_trigger()
RETURNS trigger AS $$
    version = plpy.execute("SELECT ml_load_model('purchase_predictor') AS version")[0]["version"]
    model = GD["ml_models"][("purchase_predictor", version)]

    new = TD["new"]
    features = [[float(new["age"]), float(new["income"]), float(new["credit_score"])]]
    new["predicted_purchase"] = float(model.predict(features)[0])
    new["model_version"] = version
    return "MODIFY"                  # store the row as modified above
$$ LANGUAGE plpython3u;

DROP TRIGGER IF EXISTS predict_purchase_after_insert ON customer_data;   -- one mode at a time
DROP TRIGGER IF EXISTS predict_purchase_before_insert ON customer_data;
CREATE TRIGGER predict_purchase_before_insert
    BEFORE INSERT ON customer_data
    FOR EACH ROW EXECUTE FUNCTION predict_purchase_trigger();

-- @block ml_prediction_errors
-- Failure-safe predictions write here instead of aborting the INSERT: which model and version
-- failed, on which row (its id and the row as inserted), why, and what would fix it.
CREATE TABLE IF NOT EXISTS ml_prediction_errors (
    error_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    model_name    text,
    model_version integer,        -- NULL when no version could be found at all
    table_name    text NOT NULL,
    row_id        bigint,
    row_data      jsonb,
    error         text NOT NULL,
    hint          text
);
CREATE INDEX IF NOT EXISTS ml_prediction_errors_row ON ml_prediction_errors (table_name, row_id);

-- @block ml_prediction_settings
-- Which model scores which table, and what a failed prediction does to the INSERT:
--   'log'    keep the row with a NULL prediction and log the reason (the default);
--   'reject' abort the INSERT with the reason, for tables where a prediction is mandatory.
-- A plain UPDATE changes it; every session sees the change at its next row.
CREATE TABLE IF NOT EXISTS ml_prediction_settings (
    table_name     regclass PRIMARY KEY,
    model_name     text NOT NULL,
    on_failure     text NOT NULL DEFAULT 'log' CHECK (on_failure IN ('log', 'reject')),
    flag_threshold double precision CHECK (flag_threshold BETWEEN 0 AND 1)   -- classifiers only
);
INSERT INTO ml_prediction_settings (table_name, model_name, on_failure)
VALUES ('customer_data', 'purchase_predictor', 'log')
ON CONFLICT (table_name) DO NOTHING;          -- re-applying this file keeps your choices

-- @block predict_purchase_trigger
-- The kit's row trigger: the talk's idea, made failure-safe and fast.
-- * One prepared query per row reads the model name, the version deployed and the failure
--   policy, so a retrained model is used from the next row on, in every session.
-- * The model is unpickled once per session (ml_load_model caches it in GD).
-- * For a LinearRegression the trigger computes intercept + coef·x itself: the same arithmetic
--   as model.predict() without its ~60 µs of input checks per call. Other models use predict().
-- * Predictions are stored to the cent, like purchase_amount: round(prediction * 100) cents,
--   the same operations as the batch trigger's numpy, so both modes store the same value.
-- * Any failure either keeps the row (prediction NULL, reason in ml_prediction_errors) or
--   rejects it with the reason, as ml_prediction_settings says for this table.
CREATE OR REPLACE FUNCTION predict_purchase_trigger()
RETURNS trigger AS $$
import json, math
from decimal import Decimal

FEATURES = ("age", "income", "credit_score")

class PredictionFailure(Exception):
    def __init__(self, message, hint=None):
        super().__init__(message)
        self.hint = hint

if "settings_plan" not in SD:                         # prepared once per session
    SD["settings_plan"] = plpy.prepare(
        "SELECT s.model_name, s.on_failure, m.version"
        "  FROM ml_prediction_settings s LEFT JOIN ml_models m ON m.model_name = s.model_name"
        " WHERE s.table_name = $1", ["oid"])
    SD["load_plan"] = plpy.prepare("SELECT ml_load_model($1) AS version", ["text"])
    SD["log_plan"] = plpy.prepare(
        "INSERT INTO ml_prediction_errors (model_name, model_version, table_name, row_id, row_data, error, hint)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        ["text", "integer", "text", "bigint", "jsonb", "text", "text"])
    SD["predictors"] = {}                             # {(name, version): one-row predict function}

def make_predictor(model):
    n = getattr(model, "n_features_in_", len(FEATURES))
    if n != len(FEATURES):
        raise PredictionFailure(
            f"model expects {n} features, the table supplies {len(FEATURES)} ({', '.join(FEATURES)})",
            "The deployed model was trained on other columns: retrain on these, or deploy a version that fits.")
    if type(model).__name__ == "LinearRegression" and getattr(model.coef_, "ndim", 0) == 1:
        (w0, w1, w2), b = [float(c) for c in model.coef_], float(model.intercept_)
        return lambda x: b + w0 * x[0] + w1 * x[1] + w2 * x[2]
    return lambda x: float(model.predict([x])[0])

def predictor_for(model_name, version):
    key = (model_name, version)
    if key not in SD["predictors"]:
        version = SD["load_plan"].execute([model_name])[0]["version"]   # checks digest + versions
        key = (model_name, version)
        SD["predictors"] = {key: make_predictor(GD["ml_models"][key])}  # forget older versions
    return key[1], SD["predictors"][key]

def jsonable(value):                                  # as to_jsonb() writes NUMERIC
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    return value

new = TD["new"]
found = SD["settings_plan"].execute([TD["relid"]])
model_name, on_failure, version = (found[0]["model_name"], found[0]["on_failure"], found[0]["version"]) \
    if found else (None, "log", None)
try:
    if not found:
        raise PredictionFailure(f"no model is configured for table {TD['table_name']}",
                                "INSERT INTO ml_prediction_settings (table_name, model_name) VALUES (...);")
    if version is None:
        raise PredictionFailure(f"no model named {model_name!r} is deployed",
                                "Train and deploy one: SELECT train_purchase_model();")
    x = []
    for name in FEATURES:
        if new[name] is None:
            raise PredictionFailure(f"feature {name} is NULL",
                                    f"The model needs all of {', '.join(FEATURES)}; fill in {name}.")
        value = float(new[name])
        if not math.isfinite(value):
            raise PredictionFailure(f"feature {name} is {new[name]}", "Features must be finite numbers.")
        x.append(value)
    version, predict = predictor_for(model_name, version)
    prediction = predict(x)
    if not abs(prediction) < 1e15:                    # also catches NaN and ±Infinity
        raise PredictionFailure(f"the model returned {prediction}, not a plausible amount",
                                "Check the inputs against the training range.")
    new["predicted_purchase"] = Decimal(round(prediction * 100)).scaleb(-2)   # cents, as the batch trigger
    new["model_version"] = version
except plpy.spiexceptions.QueryCanceled:
    raise                                             # statement_timeout or a cancel: never swallow
except Exception as error:
    if isinstance(error, PredictionFailure):
        message, hint = str(error), error.hint
    elif isinstance(error, plpy.SPIError):            # e.g. raised inside ml_load_model
        message = str(error).removeprefix("plpy.Error: ")
        hint = error.spidata[2] if getattr(error, "spidata", None) else None
    else:                                             # e.g. the unpickled object cannot predict
        message, hint = f"{type(error).__name__}: {error}", None
    if on_failure == "reject":
        plpy.error(f"prediction required for {TD['table_name']} failed: {message}",
                   detail=f"model {model_name!r} version {version}, row id {new.get('id')}",
                   hint=hint or "Fix the model or the row, or set on_failure = 'log' in ml_prediction_settings.")
    SD["log_plan"].execute([model_name, version, TD["table_name"], new.get("id"),
                            json.dumps({k: jsonable(v) for k, v in new.items()}, default=str), message, hint])
    new["predicted_purchase"] = None                  # the row is kept, without a prediction
    new["model_version"] = None
return "MODIFY"
$$ LANGUAGE plpython3u;

-- @block predict_purchase_batch_trigger
-- The statement-level trigger: runs once per INSERT statement, after all its rows are stored,
-- and sees them in the transition table `inserted`. One prediction over every new row, then
-- one UPDATE. The trade-off: each row is written twice (insert, then update), and until the
-- statement ends its rows have no prediction — visible only inside the inserting transaction,
-- since no one else sees uncommitted rows.
-- The UPDATE: a statement's rows nearly always get consecutive ids from the sequence, so the
-- predictions travel as one float8[] indexed by position (id - first id) and the rows are found
-- by one index range scan; when another session's inserts interleaved, it falls back to a join
-- on unnest(ids, predictions). Same failure handling and same stored values as the row trigger.
CREATE OR REPLACE FUNCTION predict_purchase_batch_trigger()
RETURNS trigger AS $$
import math
import numpy as np

FEATURES = ("age", "income", "credit_score")

class PredictionFailure(Exception):
    def __init__(self, message, hint=None):
        super().__init__(message)
        self.hint = hint

if "read_plan" not in SD:
    SD["settings_plan"] = plpy.prepare(
        "SELECT s.model_name, s.on_failure, m.version"
        "  FROM ml_prediction_settings s LEFT JOIN ml_models m ON m.model_name = s.model_name"
        " WHERE s.table_name = $1", ["oid"])
    SD["load_plan"] = plpy.prepare("SELECT ml_load_model($1) AS version", ["text"])
    # Arrays, not rows: four float8[] cross into Python far faster than thousands of dicts.
    SD["read_plan"] = plpy.prepare(
        "SELECT array_agg(id) AS ids, array_agg(age::float8) AS age,"
        "       array_agg(income::float8) AS income, array_agg(credit_score::float8) AS credit_score"
        "  FROM inserted")
    SD["update_range_plan"] = plpy.prepare(
        "UPDATE customer_data SET predicted_purchase = ($1::float8[])[id - $2 + 1]::int8 * 0.01,"
        "       model_version = $4"                   # cents -> NUMERIC via int8: 4x cheaper than float8::numeric
        " WHERE id BETWEEN $2 AND $3 AND ($1::float8[])[id - $2 + 1] <> 'NaN'",   # NaN: no prediction
        ["float8[]", "integer", "integer", "integer"])
    SD["update_join_plan"] = plpy.prepare(
        "UPDATE customer_data AS c SET predicted_purchase = p.cents::int8 * 0.01, model_version = $3"
        "  FROM unnest($1::int[], $2::float8[]) AS p(id, cents) WHERE c.id = p.id",
        ["int[]", "float8[]", "integer"])
    SD["log_plan"] = plpy.prepare(
        "INSERT INTO ml_prediction_errors (model_name, model_version, table_name, row_id, row_data, error, hint)"
        " SELECT $1, $2, $3, i.id, to_jsonb(i), e.error, e.hint"
        "   FROM inserted AS i JOIN unnest($4::bigint[], $5::text[], $6::text[]) AS e(id, error, hint)"
        "     ON i.id = e.id",
        ["text", "integer", "text", "bigint[]", "text[]", "text[]"])
    SD["predictors"] = {}                             # {(name, version): many-rows predict function}

def make_predictor(model):
    n = getattr(model, "n_features_in_", len(FEATURES))
    if n != len(FEATURES):
        raise PredictionFailure(
            f"model expects {n} features, the table supplies {len(FEATURES)} ({', '.join(FEATURES)})",
            "The deployed model was trained on other columns: retrain on these, or deploy a version that fits.")
    if type(model).__name__ == "LinearRegression" and getattr(model.coef_, "ndim", 0) == 1:
        (w0, w1, w2), b = [float(c) for c in model.coef_], float(model.intercept_)
        return lambda X: b + w0 * X[:, 0] + w1 * X[:, 1] + w2 * X[:, 2]   # the row trigger's sum, vectorised
    return lambda X: np.asarray(model.predict(X), dtype=np.float64)

def predictor_for(model_name, version):
    key = (model_name, version)
    if key not in SD["predictors"]:
        version = SD["load_plan"].execute([model_name])[0]["version"]   # checks digest + versions
        key = (model_name, version)
        SD["predictors"] = {key: make_predictor(GD["ml_models"][key])}
    return key[1], SD["predictors"][key]

def shown(value):                                     # how SQL spells the value
    if value is None:
        return "NULL"
    return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(str(value), str(value))

rows = SD["read_plan"].execute()[0]
if rows["ids"] is None:                               # an INSERT ... SELECT that matched nothing
    return
ids = rows["ids"]
found = SD["settings_plan"].execute([TD["relid"]])
model_name, on_failure, version = (found[0]["model_name"], found[0]["on_failure"], found[0]["version"]) \
    if found else (None, "log", None)

failed = {}                                           # row id -> (error, hint)
X = np.array([rows[f] for f in FEATURES], dtype=np.float64).T    # NULL arrives as None -> nan
good = np.isfinite(X).all(axis=1)
for i in np.flatnonzero(~good):                       # only the bad rows are looked at one by one
    name = next(f for f in FEATURES if rows[f][i] is None or not math.isfinite(rows[f][i]))
    if rows[name][i] is None:
        failed[ids[i]] = (f"feature {name} is NULL", f"The model needs all of {', '.join(FEATURES)}; fill in {name}.")
    else:
        failed[ids[i]] = (f"feature {name} is {shown(rows[name][i])}", "Features must be finite numbers.")
try:
    if not found:
        raise PredictionFailure(f"no model is configured for table {TD['table_name']}",
                                "INSERT INTO ml_prediction_settings (table_name, model_name) VALUES (...);")
    if version is None:
        raise PredictionFailure(f"no model named {model_name!r} is deployed",
                                "Train and deploy one: SELECT train_purchase_model();")
    if good.any():
        version, predict = predictor_for(model_name, version)
        predictions = np.full(len(ids), np.nan)
        predictions[good] = predict(X[good])
        implausible = good & ~(np.abs(predictions) < 1e15)          # also catches NaN and ±Infinity
        for i in np.flatnonzero(implausible):
            failed[ids[i]] = (f"the model returned {predictions[i]}, not a plausible amount",
                              "Check the inputs against the training range.")
        cents = np.rint(predictions * 100)            # cents, bit for bit as the row trigger rounds
        cents[implausible] = np.nan
        id_array = np.array(ids, dtype=np.int64)
        first, last = int(id_array.min()), int(id_array.max())
        if last - first + 1 == len(ids):              # consecutive ids: address predictions by position
            by_position = np.empty(len(ids))
            by_position[id_array - first] = cents     # nan (no prediction) is skipped by the UPDATE
            SD["update_range_plan"].execute([by_position.tolist(), first, last, version])
        else:                                         # interleaved with another session's inserts
            keep = np.isfinite(cents)
            SD["update_join_plan"].execute([id_array[keep].tolist(), cents[keep].tolist(), version])
except plpy.spiexceptions.QueryCanceled:
    raise                                             # statement_timeout or a cancel: never swallow
except Exception as error:                            # the whole batch failed: every row gets the reason
    if isinstance(error, PredictionFailure):
        message, hint = str(error), error.hint
    elif isinstance(error, plpy.SPIError):            # e.g. raised inside ml_load_model
        message = str(error).removeprefix("plpy.Error: ")
        hint = error.spidata[2] if getattr(error, "spidata", None) else None
    else:
        message, hint = f"{type(error).__name__}: {error}", None
    for i in ids:
        failed.setdefault(i, (message, hint))

if failed:
    first_failed = min(failed)
    if on_failure == "reject":
        message, hint = failed[first_failed]
        plpy.error(f"prediction required for {TD['table_name']} failed: {message}",
                   detail=f"model {model_name!r} version {version}, row id {first_failed}"
                          f" (and {len(failed) - 1} more of the statement's {len(ids)} rows)",
                   hint=hint or "Fix the model or the rows, or set on_failure = 'log' in ml_prediction_settings.")
    keys = sorted(failed)
    SD["log_plan"].execute([model_name, version, TD["table_name"], keys,
                            [failed[k][0] for k in keys], [failed[k][1] for k in keys]])
$$ LANGUAGE plpython3u;

-- @block use_prediction_trigger
-- Choose how customer_data gets its predictions: 'row' (BEFORE INSERT, FOR EACH ROW — the
-- talk's), 'statement' (AFTER INSERT, FOR EACH STATEMENT, one batch) or 'none'. Exactly one
-- mode is active; the switch is one transaction, so concurrent INSERTs see the old or the new
-- mode, never both or neither.
-- Statement mode updates every row it inserts, once. statement_fillfactor leaves that much of
-- each new page filled by INSERTs (45%: room for every row's second version), so the UPDATE
-- stays on the row's page and adds no index entry (a HOT update) — it roughly halves the
-- UPDATE's cost, for a table about twice as large. Pages already written keep their layout;
-- 'row' and 'none' restore the default (100%).
CREATE OR REPLACE FUNCTION use_prediction_trigger(mode text, statement_fillfactor integer DEFAULT 45)
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
    IF mode IS NULL OR mode NOT IN ('row', 'statement', 'none') THEN
        RAISE EXCEPTION 'use_prediction_trigger: mode must be ''row'', ''statement'' or ''none'', got %',
            coalesce(quote_literal(mode), 'NULL')
            USING HINT = 'For example: SELECT use_prediction_trigger(''statement'');';
    END IF;
    IF statement_fillfactor IS NULL OR statement_fillfactor NOT BETWEEN 10 AND 100 THEN
        RAISE EXCEPTION 'use_prediction_trigger: statement_fillfactor must be between 10 and 100, got %',
            coalesce(statement_fillfactor::text, 'NULL')
            USING HINT = '45 leaves room for every row''s update; 100 leaves none.';
    END IF;
    -- Both drops, then at most one create; IF EXISTS checks keep psql quiet (no NOTICEs).
    IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'customer_data'::regclass
                                        AND tgname = 'predict_purchase_before_insert') THEN
        DROP TRIGGER predict_purchase_before_insert ON customer_data;
    END IF;
    IF EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'customer_data'::regclass
                                        AND tgname = 'predict_purchase_after_insert') THEN
        DROP TRIGGER predict_purchase_after_insert ON customer_data;
    END IF;
    IF mode = 'row' THEN
        CREATE TRIGGER predict_purchase_before_insert
            BEFORE INSERT ON customer_data
            FOR EACH ROW EXECUTE FUNCTION predict_purchase_trigger();
    ELSIF mode = 'statement' THEN
        CREATE TRIGGER predict_purchase_after_insert
            AFTER INSERT ON customer_data
            REFERENCING NEW TABLE AS inserted
            FOR EACH STATEMENT EXECUTE FUNCTION predict_purchase_batch_trigger();
    END IF;
    IF mode = 'statement' AND statement_fillfactor < 100 THEN
        EXECUTE format('ALTER TABLE customer_data SET (fillfactor = %s)', statement_fillfactor);
    ELSE
        ALTER TABLE customer_data RESET (fillfactor);
    END IF;
    RETURN mode;
END;
$$;

-- Which mode is active now: 'row', 'statement' or 'none'.
CREATE OR REPLACE FUNCTION prediction_trigger_mode()
RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(string_agg(CASE tgname WHEN 'predict_purchase_before_insert' THEN 'row'
                                           ELSE 'statement' END, '+'), 'none')
      FROM pg_trigger
     WHERE tgrelid = 'customer_data'::regclass
       AND tgname IN ('predict_purchase_before_insert', 'predict_purchase_after_insert')
$$;

SELECT use_prediction_trigger('row');                 -- the talk's behaviour after applying this file
