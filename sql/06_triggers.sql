-- 06 — triggers: a prediction stored with every INSERT, row by row or one batch per statement;
-- failure-safe (the row is kept, the failure logged) or strict (the row is rejected); and the
-- talk's first use case, fraud detection on transactions, end to end with a classifier.
-- Apply with: psql "$DATABASE_URL" -f sql/06_triggers.sql      (idempotent; needs sql/02 and sql/04 first)
-- Applying it (again) leaves the talk's row trigger active on customer_data; switch with
--             SELECT use_prediction_trigger('row' | 'statement' | 'none');
-- Fraud:      SELECT load_sample_transactions(); SELECT train_fraud_model();
--             INSERT INTO transactions (amount, merchant_category, hour_of_day, distance_from_home_km)
--             VALUES (1899, 'electronics', 3, 850) RETURNING fraud_probability, is_flagged;

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
-- A plain UPDATE changes it; every session sees the change at its next row. table_name is the
-- table's name as the trigger sees it (TG_TABLE_NAME): text, so the settings survive a table
-- being dropped and created again (a regclass would point at the old table's OID).
CREATE TABLE IF NOT EXISTS ml_prediction_settings (
    table_name     text PRIMARY KEY,
    model_name     text NOT NULL,
    on_failure     text NOT NULL DEFAULT 'log' CHECK (on_failure IN ('log', 'reject')),
    flag_threshold double precision CHECK (flag_threshold BETWEEN 0 AND 1)   -- classifiers only
);
INSERT INTO ml_prediction_settings (table_name, model_name, on_failure)
VALUES ('customer_data', 'purchase_predictor', 'log')
ON CONFLICT (table_name) DO NOTHING;          -- re-applying this file keeps your choices

-- @block settings_upgrade
-- The first version of this file stored table_name as regclass; convert such a table in place.
DO $$
BEGIN
    IF (SELECT atttypid FROM pg_attribute WHERE attrelid = 'ml_prediction_settings'::regclass
                                            AND attname = 'table_name') = 'regclass'::regtype THEN
        ALTER TABLE ml_prediction_settings ALTER COLUMN table_name TYPE text USING table_name::text;
    END IF;
END;
$$;

-- @block ml_prediction_failures
-- What the three prediction triggers below share, written once: the error class whose sqlstate
-- says whose problem a failure is, how any exception becomes (message, hint, sqlstate), and how a
-- failed row is either rejected or kept and logged. A trigger installs it into GD (the dict all
-- PL/Python functions of a session share) the first time it runs in a session.
CREATE OR REPLACE FUNCTION ml_prediction_failures_install()
RETURNS void AS $$
import json, math, types
from decimal import Decimal

class PredictionFailure(Exception):
    # sqlstate says whose problem it is: 22xxx the row's data (fix the row), 55000 the model
    # or its setup (fix the deployment, then retry the row).
    def __init__(self, message, hint=None, sqlstate="55000"):
        super().__init__(message)
        self.hint, self.sqlstate = hint, sqlstate

def describe(error, model_name, version):
    """(message, hint, sqlstate) for any exception raised while predicting."""
    if isinstance(error, PredictionFailure):
        return str(error), error.hint, error.sqlstate
    if isinstance(error, plpy.SPIError):              # raised inside ml_load_model
        message = str(error).removeprefix("plpy.Error: ")
        hint = error.spidata[2] if getattr(error, "spidata", None) else None
        if hint is not None:                          # one of its checks: P0002, XX001, 55000 ...
            return message, hint, getattr(error, "sqlstate", None) or "55000"
        return (f"loading model {model_name!r} version {version} failed: {message}",   # unpickling failed
                f"Deploy a version that loads (notebook 07: SELECT ml_rollback('{model_name}');).", "55000")
    return (f"model {model_name!r} version {version} failed: {type(error).__name__}: {error}",  # e.g. no predict()
            f"Deploy a version that works (notebook 07: SELECT ml_rollback('{model_name}');).", "55000")

def jsonable(value):                                  # as to_jsonb() writes numbers
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)                         # "NaN", "Infinity": JSON has no such numbers
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[str(value)]
    return value

log_plan = plpy.prepare(
    "INSERT INTO ml_prediction_errors (model_name, model_version, table_name, row_id, row_data, error, hint)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)", ["text", "integer", "text", "bigint", "jsonb", "text", "text"])

def reject_or_log(on_failure, table_name, model_name, version, row, message, hint, sqlstate):
    """A row trigger's failure: refuse the row (on_failure = 'reject'), or log why and keep it."""
    if on_failure == "reject":
        plpy.error(f"prediction required for {table_name} failed: {message}",
                   detail=f"model {model_name!r} version {version}, row id {row.get('id')}",
                   hint=hint or "Fix the model or the row, or set on_failure = 'log' in ml_prediction_settings.",
                   sqlstate=sqlstate)
    log_plan.execute([model_name, version, table_name, row.get("id"),
                      json.dumps({k: jsonable(v) for k, v in row.items()}, default=str), message, hint])

GD["ml_prediction_failures"] = types.SimpleNamespace(
    PredictionFailure=PredictionFailure, describe=describe, reject_or_log=reject_or_log)
$$ LANGUAGE plpython3u;

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
import math
from decimal import Decimal

# Plans, the error class and the helpers are made once per session and kept in SD (this
# function's own dict): defining a class on every row would cost ~10 µs, as much as the rest.
if "ml_prediction_failures" not in GD:              # shared helpers, once per session
    plpy.execute("SELECT ml_prediction_failures_install()")
kit = SD.get("kit")
if kit is None:
    FEATURES = ("age", "income", "credit_score")
    failures = GD["ml_prediction_failures"]
    PredictionFailure = failures.PredictionFailure

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

    def predictor_for(model_name, version, sha256):
        # Keyed by the registry's digest too, like ml_load_model's own cache: a registry rebuilt
        # under the same version numbers is never served from a stale predictor.
        if (model_name, version, sha256) not in kit.predictors:
            version = kit.load_plan.execute([model_name])[0]["version"]   # checks digest + versions
            loaded = (model_name, version, GD.get("ml_models.sha256", {}).get((model_name, version)))
            kit.predictors = {loaded: make_predictor(GD["ml_models"][(model_name, version)])}
            return version, kit.predictors[loaded]
        return version, kit.predictors[(model_name, version, sha256)]

    import types
    kit = SD["kit"] = types.SimpleNamespace(
        FEATURES=FEATURES, failures=failures, predictor_for=predictor_for,
        predictors={},                                # {(name, version, sha256): one-row predict function}
        settings_plan=plpy.prepare(
            "SELECT s.model_name, s.on_failure, m.version, v.model_sha256"
            "  FROM ml_prediction_settings s"
            "  LEFT JOIN ml_models m ON m.model_name = s.model_name"
            "  LEFT JOIN ml_model_versions v ON v.model_name = m.model_name AND v.version = m.version"
            " WHERE s.table_name = $1", ["text"]),
        load_plan=plpy.prepare("SELECT ml_load_model($1) AS version", ["text"]))
FEATURES, PredictionFailure = kit.FEATURES, kit.failures.PredictionFailure

new = TD["new"]
found = kit.settings_plan.execute([TD["table_name"]])
model_name, on_failure, version, sha256 = (found[0]["model_name"], found[0]["on_failure"],
                                           found[0]["version"], found[0]["model_sha256"]) \
    if found else (None, "log", None, None)
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
                                    f"The model needs all of {', '.join(FEATURES)}; fill in {name}.", "22004")
        value = float(new[name])
        if not math.isfinite(value):
            raise PredictionFailure(f"feature {name} is {new[name]}", "Features must be finite numbers.", "22023")
        x.append(value)
    version, predict = kit.predictor_for(model_name, version, sha256)
    prediction = predict(x)
    if not abs(prediction) < 1e15:                    # also catches NaN and ±Infinity
        raise PredictionFailure(f"the model returned {prediction}, not a plausible amount",
                                "Check the inputs against the training range.", "22023")
    new["predicted_purchase"] = Decimal(round(prediction * 100)).scaleb(-2)   # cents, as the batch trigger
    new["model_version"] = version
except plpy.spiexceptions.QueryCanceled:
    raise                                             # statement_timeout or a cancel: never swallow
except Exception as error:
    message, hint, sqlstate = kit.failures.describe(error, model_name, version)
    kit.failures.reject_or_log(on_failure, TD["table_name"], model_name, version, new, message, hint, sqlstate)
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
if "ml_prediction_failures" not in GD:              # shared helpers, once per session
    plpy.execute("SELECT ml_prediction_failures_install()")
failures = GD["ml_prediction_failures"]
PredictionFailure = failures.PredictionFailure

if "read_plan" not in SD:
    SD["settings_plan"] = plpy.prepare(
        "SELECT s.model_name, s.on_failure, m.version, v.model_sha256"
        "  FROM ml_prediction_settings s"
        "  LEFT JOIN ml_models m ON m.model_name = s.model_name"
        "  LEFT JOIN ml_model_versions v ON v.model_name = m.model_name AND v.version = m.version"
        " WHERE s.table_name = $1", ["text"])
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

def predictor_for(model_name, version, sha256):     # as in the row trigger
    if (model_name, version, sha256) not in SD["predictors"]:
        version = SD["load_plan"].execute([model_name])[0]["version"]   # checks digest + versions
        loaded = (model_name, version, GD.get("ml_models.sha256", {}).get((model_name, version)))
        SD["predictors"] = {loaded: make_predictor(GD["ml_models"][(model_name, version)])}
        return version, SD["predictors"][loaded]
    return version, SD["predictors"][(model_name, version, sha256)]

def shown(value):                                     # how SQL spells the value
    if value is None:
        return "NULL"
    return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(str(value), str(value))

rows = SD["read_plan"].execute()[0]
if rows["ids"] is None:                               # an INSERT ... SELECT that matched nothing
    return
ids = rows["ids"]
found = SD["settings_plan"].execute([TD["table_name"]])
model_name, on_failure, version, sha256 = (found[0]["model_name"], found[0]["on_failure"],
                                           found[0]["version"], found[0]["model_sha256"]) \
    if found else (None, "log", None, None)

failed = {}                                           # row id -> (error, hint)
X = np.array([rows[f] for f in FEATURES], dtype=np.float64).T    # NULL arrives as None -> nan
good = np.isfinite(X).all(axis=1)
for i in np.flatnonzero(~good):                       # only the bad rows are looked at one by one
    name = next(f for f in FEATURES if rows[f][i] is None or not math.isfinite(rows[f][i]))
    if rows[name][i] is None:
        failed[ids[i]] = (f"feature {name} is NULL", f"The model needs all of {', '.join(FEATURES)}; fill in {name}.",
                          "22004")
    else:
        failed[ids[i]] = (f"feature {name} is {shown(rows[name][i])}", "Features must be finite numbers.", "22023")
try:
    if not found:
        raise PredictionFailure(f"no model is configured for table {TD['table_name']}",
                                "INSERT INTO ml_prediction_settings (table_name, model_name) VALUES (...);")
    if version is None:
        raise PredictionFailure(f"no model named {model_name!r} is deployed",
                                "Train and deploy one: SELECT train_purchase_model();")
    if good.any():
        version, predict = predictor_for(model_name, version, sha256)
        predictions = np.full(len(ids), np.nan)
        predictions[good] = predict(X[good])
        implausible = good & ~(np.abs(predictions) < 1e15)          # also catches NaN and ±Infinity
        for i in np.flatnonzero(implausible):
            failed[ids[i]] = (f"the model returned {predictions[i]}, not a plausible amount",
                              "Check the inputs against the training range.", "22023")
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
    message, hint, sqlstate = failures.describe(error, model_name, version)
    for i in ids:
        failed.setdefault(i, (message, hint, sqlstate))

if failed:
    first_failed = min(failed)
    if on_failure == "reject":
        message, hint, sqlstate = failed[first_failed]
        plpy.error(f"prediction required for {TD['table_name']} failed: {message}",
                   detail=f"model {model_name!r} version {version}, row id {first_failed}"
                          f" (and {len(failed) - 1} more of the statement's {len(ids)} rows)",
                   hint=hint or "Fix the model or the rows, or set on_failure = 'log' in ml_prediction_settings.",
                   sqlstate=sqlstate)
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
-- An earlier one-argument version would make one-argument calls ambiguous.
DROP FUNCTION IF EXISTS use_prediction_trigger(text);
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

-- @block transactions
-- The talk's first real-time use case: card transactions, scored for fraud as they are inserted.
-- is_fraud is the confirmed outcome (a chargeback, weeks later): known for history, NULL for a
-- new transaction. The trigger fills fraud_probability, is_flagged and model_version.
CREATE TABLE IF NOT EXISTS transactions (
    id                    bigserial PRIMARY KEY,
    created_at            timestamptz NOT NULL DEFAULT now(),
    customer_id           integer,
    amount                numeric(12, 2),
    merchant_category     text,
    hour_of_day           integer CHECK (hour_of_day BETWEEN 0 AND 23),   -- the cardholder's local time
    distance_from_home_km double precision,
    is_fraud              boolean,
    fraud_probability     double precision,
    is_flagged            boolean,
    model_version         integer
);

-- @block fraud_rule
-- The rule the generator labels fraud with (before noise): a large purchase far from home, or
-- an electronics purchase in the middle of the night. Kept as a function so the notebook can
-- compare what the model flags with the truth.
CREATE OR REPLACE FUNCTION fraud_rule(amount numeric, merchant_category text, hour_of_day integer,
                                      distance_from_home_km double precision)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT (amount > 300 AND distance_from_home_km > 500)
        OR (merchant_category = 'electronics' AND hour_of_day < 5 AND amount > 100)
$$;

-- @block sample_transactions
-- n seeded transactions (the same seed gives the same rows everywhere). Amounts are log-normal,
-- scaled per category; most purchases happen near home in the daytime. is_fraud is fraud_rule()
-- plus noise: 5% of rule matches are never reported (is_fraud false) and 0.1% of the other
-- transactions are fraud the rule cannot see — so no model can be perfect.
CREATE OR REPLACE FUNCTION sample_transactions(n_rows integer DEFAULT 50000, seed integer DEFAULT 42)
RETURNS TABLE (customer_id integer, amount numeric, merchant_category text, hour_of_day integer,
               distance_from_home_km double precision, is_fraud boolean)
LANGUAGE plpgsql
AS $$
BEGIN
    IF n_rows IS NULL OR n_rows < 0 THEN
        RAISE EXCEPTION 'sample_transactions: n_rows must be 0 or more, got %', n_rows
            USING HINT = 'For example: SELECT * FROM sample_transactions(1000, 42);';
    END IF;
    PERFORM setseed(seed / 2147483648.0);             -- setseed wants a value in [-1, 1]
    RETURN QUERY
    SELECT t.customer_id, t.amount, t.merchant_category, t.hour_of_day, t.distance_from_home_km,
           CASE WHEN fraud_rule(t.amount, t.merchant_category, t.hour_of_day, t.distance_from_home_km)
                THEN t.noise >= 0.05 ELSE t.noise < 0.001 END
      FROM (
        SELECT r.customer_id, r.merchant_category,
               round((exp(3.4 + 1.1 * r.z) * CASE r.merchant_category
                   WHEN 'electronics' THEN 4.0 WHEN 'travel' THEN 6.0 WHEN 'fuel' THEN 1.2
                   WHEN 'restaurant' THEN 0.8 WHEN 'online_services' THEN 0.6 ELSE 1.0 END)::numeric, 2) AS amount,
               CASE WHEN r.night < 0.08 THEN floor(r.hour * 5)::int           -- 0..4, 8% of purchases
                    ELSE 5 + floor(r.hour * 19)::int END AS hour_of_day,       -- 5..23
               CASE WHEN r.travelling < 0.15 THEN round((50 + r.far * 2950)::numeric, 1)::float8
                    ELSE round(exp(1.2 + r.z2)::numeric, 1)::float8 END AS distance_from_home_km,
               r.noise
          FROM (   -- every random number of a row drawn here, in a fixed order: deterministic per seed
            SELECT 1 + floor(random() * 5000)::int AS customer_id,
                   CASE WHEN pick < 0.30 THEN 'grocery' WHEN pick < 0.50 THEN 'restaurant'
                        WHEN pick < 0.65 THEN 'fuel' WHEN pick < 0.77 THEN 'electronics'
                        WHEN pick < 0.87 THEN 'travel' ELSE 'online_services' END AS merchant_category,
                   z, z2, night, hour, travelling, far, noise
              FROM (SELECT random() AS pick,
                           sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z,
                           sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z2,
                           random() AS night, random() AS hour, random() AS travelling, random() AS far,
                           random() AS noise
                      FROM generate_series(1, n_rows)) AS draws
          ) AS r
      ) AS t;
END;
$$;

-- @block load_sample_transactions
-- Replace the table's contents with n labelled (historical) transactions. Labelled rows are
-- history, not traffic: the fraud trigger's WHEN clause skips them, so loading is fast.
CREATE OR REPLACE FUNCTION load_sample_transactions(n_rows integer DEFAULT 50000, seed integer DEFAULT 42)
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
    TRUNCATE transactions RESTART IDENTITY;
    INSERT INTO transactions (customer_id, amount, merchant_category, hour_of_day, distance_from_home_km, is_fraud)
    SELECT * FROM sample_transactions(n_rows, seed);
    RETURN n_rows;
END;
$$;

-- @block train_fraud_model
-- Train a small decision tree on the labelled transactions, measure it on a stratified holdout
-- it never saw, register it (sql/04's registry: features in order, metrics, the tree's rules as
-- text for an auditor) and deploy it. merchant_category is one-hot encoded by the registry's
-- feature list ("merchant_category=travel", ...), which the trigger reads back.
CREATE OR REPLACE FUNCTION train_fraud_model(
    model_name text DEFAULT 'fraud_detector',
    max_depth integer DEFAULT 5,
    holdout_fraction double precision DEFAULT 0.2,
    seed integer DEFAULT 42,
    promote boolean DEFAULT true)
RETURNS integer
LANGUAGE plpython3u
AS $$
import json, pickle
import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier, export_text

NUMERIC = ["amount", "hour_of_day", "distance_from_home_km"]
THRESHOLD = 0.5
if not model_name or max_depth is None or max_depth < 1 or seed is None or promote is None:
    plpy.error("train_fraud_model: model_name, max_depth (1 or more), seed and promote must be given",
               hint="For example: SELECT train_fraud_model('fraud_detector', 5);", sqlstate="22023")
if holdout_fraction is None or not 0 < holdout_fraction < 1:
    plpy.error(f"holdout_fraction must be between 0 and 1 (exclusive), got {holdout_fraction}", sqlstate="22023")

rows = plpy.execute(
    "SELECT amount::float8 AS amount, hour_of_day::float8 AS hour_of_day, distance_from_home_km,"
    "       merchant_category, is_fraud FROM transactions"
    " WHERE is_fraud IS NOT NULL AND amount IS NOT NULL AND hour_of_day IS NOT NULL"
    "   AND distance_from_home_km IS NOT NULL AND merchant_category IS NOT NULL ORDER BY id")
y = np.array([r["is_fraud"] for r in rows], dtype=bool)
if len(y) < 100 or y.sum() < 10:
    plpy.error(f"transactions has {len(y)} labelled rows, {int(y.sum())} of them fraud; too few to train and evaluate",
               hint="Load history first: SELECT load_sample_transactions();", sqlstate="22000")
categories = sorted({r["merchant_category"] for r in rows})
features = NUMERIC + [f"merchant_category={c}" for c in categories]
X = np.array([[r[f] for f in NUMERIC] + [float(r["merchant_category"] == c) for c in categories] for r in rows])

X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=holdout_fraction, random_state=seed, stratify=y)   # the holdout keeps the fraud rate
# ccp_alpha prunes splits that do not pay for themselves: the tree then reads like the rule.
model = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=10, ccp_alpha=1e-4, random_state=seed)
model.fit(X_train, y_train)

probability = model.predict_proba(X_test)[:, list(model.classes_).index(True)]
flagged = probability >= THRESHOLD
tn, fp, fn, tp = confusion_matrix(y_test, flagged, labels=[False, True]).ravel()
metrics = {"precision": float(precision_score(y_test, flagged, zero_division=0)),
           "recall": float(recall_score(y_test, flagged)),
           "f1": float(f1_score(y_test, flagged)),
           "roc_auc": float(roc_auc_score(y_test, probability)),
           "threshold": THRESHOLD, "holdout_rows": int(len(y_test)), "holdout_fraud": int(y_test.sum()),
           "true_positives": int(tp), "false_positives": int(fp),
           "false_negatives": int(fn), "true_negatives": int(tn)}
parameters = {"max_depth": max_depth, "min_samples_leaf": 10, "ccp_alpha": 1e-4, "categories": categories,
              "rules": export_text(model, feature_names=features, decimals=1)}
training_range = {f: [float(X_train[:, i].min()), float(X_train[:, i].max())] for i, f in enumerate(NUMERIC)}

version = plpy.execute(plpy.prepare(
    "SELECT register_model_version($1, $2, 'train_fraud_model', 'DecisionTreeClassifier', $3, 'is_fraud',"
    " $4, $5, $6, $7) AS version", ["text", "bytea", "text[]", "bigint", "jsonb", "jsonb", "jsonb"]),
    [model_name, pickle.dumps(model), features, len(y_train), json.dumps(training_range),
     json.dumps(metrics), json.dumps(parameters)])[0]["version"]
if promote:
    plpy.execute(plpy.prepare(
        "INSERT INTO ml_models (model_name, model_data, version)"
        " SELECT model_name, model_data, version FROM ml_model_versions WHERE model_name = $1 AND version = $2",
        ["text", "integer"]), [model_name, version])
return version
$$;

-- @block flag_fraud_trigger
-- Score each new transaction as it is inserted: fraud_probability from the deployed tree,
-- is_flagged when it reaches the table's flag_threshold (ml_prediction_settings: the fraud team
-- tunes it with an UPDATE, no redeploy). Failure handling as in predict_purchase_trigger: keep
-- the row unscored (is_flagged NULL: route it to manual review) and log why, or reject it.
CREATE OR REPLACE FUNCTION flag_fraud_trigger()
RETURNS trigger AS $$
import math

if "ml_prediction_failures" not in GD:              # shared helpers, once per session
    plpy.execute("SELECT ml_prediction_failures_install()")
kit = SD.get("kit")
if kit is None:                                       # once per session, as in predict_purchase_trigger
    failures = GD["ml_prediction_failures"]
    PredictionFailure = failures.PredictionFailure

    def scorer_for(model_name, version, sha256):
        # (version, model, its feature list, the column of predict_proba that means "fraud")
        if (model_name, version, sha256) not in kit.scorers:
            version = kit.load_plan.execute([model_name])[0]["version"]   # checks digest + versions
            model = GD["ml_models"][(model_name, version)]
            features = kit.features_plan.execute([model_name, version])[0]["features"]
            if not features or not hasattr(model, "predict_proba") or True not in list(model.classes_):
                raise PredictionFailure(f"model {model_name!r} version {version} is not a fraud classifier with a feature list",
                                        "Deploy a model trained by train_fraud_model().")
            if getattr(model, "n_features_in_", len(features)) != len(features):
                raise PredictionFailure(f"model expects {model.n_features_in_} features, its registry row lists {len(features)}",
                                        "The registry row does not describe these bytes: retrain with train_fraud_model().")
            sha256 = GD.get("ml_models.sha256", {}).get((model_name, version))
            kit.scorers = {(model_name, version, sha256): (model, features, list(model.classes_).index(True))}
        return (version,) + kit.scorers[(model_name, version, sha256)]

    import types
    kit = SD["kit"] = types.SimpleNamespace(
        failures=failures, scorer_for=scorer_for, scorers={},
        settings_plan=plpy.prepare(
            "SELECT s.model_name, s.on_failure, s.flag_threshold, m.version, v.model_sha256"
            "  FROM ml_prediction_settings s"
            "  LEFT JOIN ml_models m ON m.model_name = s.model_name"
            "  LEFT JOIN ml_model_versions v ON v.model_name = m.model_name AND v.version = m.version"
            " WHERE s.table_name = $1", ["text"]),
        load_plan=plpy.prepare("SELECT ml_load_model($1) AS version", ["text"]),
        features_plan=plpy.prepare(
            "SELECT features FROM ml_model_versions WHERE model_name = $1 AND version = $2", ["text", "integer"]))
PredictionFailure = kit.failures.PredictionFailure

new = TD["new"]
found = kit.settings_plan.execute([TD["table_name"]])
model_name, on_failure, threshold, version, sha256 = (
    found[0]["model_name"], found[0]["on_failure"], found[0]["flag_threshold"],
    found[0]["version"], found[0]["model_sha256"]) if found else (None, "log", None, None, None)
try:
    if not found:
        raise PredictionFailure(f"no model is configured for table {TD['table_name']}",
                                "INSERT INTO ml_prediction_settings (table_name, model_name) VALUES (...);")
    if version is None:
        raise PredictionFailure(f"no model named {model_name!r} is deployed",
                                "Train and deploy one: SELECT train_fraud_model();")
    version, model, features, fraud_column = kit.scorer_for(model_name, version, sha256)
    x = []
    for feature in features:                          # the order the model was trained with
        column, _, category = feature.partition("=")
        value = new.get(column)
        if value is None:
            raise PredictionFailure(f"feature {column} is NULL", f"The fraud model needs {column}.", "22004")
        if category:                                  # one-hot: 1.0 for the row's own category
            x.append(1.0 if value == category else 0.0)
        else:
            value = float(value)
            if not math.isfinite(value):
                shown = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[str(value)]   # as SQL spells it
                raise PredictionFailure(f"feature {column} is {shown}", "Features must be finite numbers.", "22023")
            x.append(value)
    known = [f.partition("=")[2] for f in features if f.startswith("merchant_category=")]
    if known and new["merchant_category"] not in known:
        raise PredictionFailure(f"merchant_category {new['merchant_category']!r} was not seen in training",
                                "Known categories: " + ", ".join(known) + ". Retrain when a new category has history.",
                                "22023")
    probability = float(model.predict_proba([x])[0][fraud_column])
    new["fraud_probability"] = probability
    new["is_flagged"] = probability >= (0.5 if threshold is None else threshold)
    new["model_version"] = version
except plpy.spiexceptions.QueryCanceled:
    raise
except Exception as error:
    message, hint, sqlstate = kit.failures.describe(error, model_name, version)
    kit.failures.reject_or_log(on_failure, TD["table_name"], model_name, version, new, message, hint, sqlstate)
    new["fraud_probability"] = None                   # kept unscored: is_flagged NULL means "review by hand"
    new["is_flagged"] = None
    new["model_version"] = None
return "MODIFY"
$$ LANGUAGE plpython3u;

-- Only new traffic is scored: history arrives with its outcome (is_fraud) and is skipped by the
-- WHEN clause without calling Python at all.
DROP TRIGGER IF EXISTS flag_fraud_before_insert ON transactions;
CREATE TRIGGER flag_fraud_before_insert
    BEFORE INSERT ON transactions
    FOR EACH ROW WHEN (NEW.is_fraud IS NULL)
    EXECUTE FUNCTION flag_fraud_trigger();

INSERT INTO ml_prediction_settings (table_name, model_name, on_failure, flag_threshold)
VALUES ('transactions', 'fraud_detector', 'log', 0.5)
ON CONFLICT (table_name) DO NOTHING;

-- @block default_mode
-- Applying this file leaves the talk's behaviour: the row trigger on customer_data.
SELECT use_prediction_trigger('row');
