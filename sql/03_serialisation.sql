-- 03 — serialisation: a trained model as bytes in a bytea column, and how to load such bytes
-- safely: a sha256 digest checked before loading, the library versions it was written with,
-- and two safer formats than pickle (skops, and plain coefficients as JSON).
-- Apply with: psql "$DATABASE_URL" -f sql/03_serialisation.sql   (idempotent; needs sql/02 first; as a superuser:
--             it creates the signing key)
-- Then:       SELECT serialisation_demo_train('server_pickle', 'pickle');
--             SELECT serialisation_demo_predict('server_pickle', 40, 60000, 700);
-- A demo table of its own: the kit's model registry (ml_models) is notebook 04's.

-- @block serialisation_demo
-- One row per serialised model. model_sha256 is computed when the bytes are written, by
-- serialisation_demo_store(), and compared with the bytes every time before they are loaded.
-- It is deliberately NOT a generated column: a digest recomputed from whatever bytes are there
-- would bless tampered bytes too.
CREATE TABLE IF NOT EXISTS serialisation_demo (
    name             text PRIMARY KEY,
    format           text        NOT NULL CHECK (format IN ('pickle', 'skops', 'json')),
    model_data       bytea       NOT NULL,
    model_sha256     text        NOT NULL CHECK (model_sha256 ~ '^[0-9a-f]{64}$'),
    library_versions jsonb       NOT NULL,    -- what wrote the bytes; loading checks the server matches
    created_at       timestamptz NOT NULL DEFAULT now()
);
-- The digest catches changed bytes, not someone who changes the digest too. The signature does:
-- an HMAC with a key (below) that only superusers can read, checked before the bytes are loaded.
ALTER TABLE serialisation_demo ADD COLUMN IF NOT EXISTS model_hmac text;


-- @block signing_key
-- The signing key, made with the first table that stores model bytes (sql/03's demo, or sql/04's
-- registry: this block is the same in both files), so that every model is signed from the first
-- one on. A sha256 digest stored beside the bytes proves nothing against someone who can write
-- both; an HMAC with a key they cannot read does. The key sits in a schema only superusers can
-- enter, made once from gen_random_uuid() (the server's strong random source: 2 x 122 random bits).
CREATE SCHEMA IF NOT EXISTS ml_private;
REVOKE ALL ON SCHEMA ml_private FROM PUBLIC;
CREATE TABLE IF NOT EXISTS ml_private.model_signing_key (
    only_one   boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    key        bytea NOT NULL CHECK (octet_length(key) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON ml_private.model_signing_key FROM PUBLIC;
INSERT INTO ml_private.model_signing_key (key)
SELECT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
 WHERE NOT EXISTS (SELECT FROM ml_private.model_signing_key);

-- The HMAC the loader checks (pgmlkit_server.loader.model_hmac): name, version, library versions
-- and bytes, so a signed model cannot be moved to another name or version, nor claim other libraries.
CREATE OR REPLACE FUNCTION ml_private.model_hmac(key bytea, model_name text, version integer,
                                                 library_versions jsonb, model_data bytea)
RETURNS text
LANGUAGE plpython3u IMMUTABLE
AS $$
from pgmlkit_server.loader import model_hmac
return model_hmac(key, model_name, version, library_versions, model_data)
$$;
REVOKE EXECUTE ON FUNCTION ml_private.model_hmac(bytea, text, integer, jsonb, bytea) FROM PUBLIC;

-- @block serialisation_library_versions
-- The versions this server runs: stored with every model, compared before loading one.
CREATE OR REPLACE FUNCTION serialisation_library_versions()
RETURNS jsonb
LANGUAGE plpython3u STABLE
AS $$
import json, sys
from importlib import metadata
versions = {"python": "%d.%d.%d" % sys.version_info[:3]}
for name in ("scikit-learn", "numpy", "scipy", "skops"):
    versions[name] = metadata.version(name)
return json.dumps(versions)
$$;

-- @block serialisation_demo_store
-- Store (or replace) a serialised model with the digest of its bytes. p_library_versions names
-- the versions that wrote the bytes; NULL means "this server's", which the kit's pins make the
-- same as the notebook kernel's. Returns the hex digest.
CREATE OR REPLACE FUNCTION serialisation_demo_store(
    p_name text, p_format text, p_model_data bytea, p_library_versions jsonb DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    digest   text;
    versions jsonb;
BEGIN
    IF p_name IS NULL OR p_model_data IS NULL THEN
        RAISE EXCEPTION 'serialisation_demo_store needs a name and the model''s bytes (got name %, % bytes)',
            p_name, octet_length(p_model_data)
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'For example: SELECT serialisation_demo_store(''my_model'', ''pickle'', <bytes>);';
    END IF;
    IF p_format IS NULL OR p_format NOT IN ('pickle', 'skops', 'json') THEN
        RAISE EXCEPTION 'unknown format %', coalesce(p_format, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use one of: pickle, skops, json.';
    END IF;
    digest := encode(sha256(p_model_data), 'hex');
    versions := coalesce(p_library_versions, serialisation_library_versions());
    -- Signed here, where the bytes are stored: this function is the demo's "training path".
    INSERT INTO serialisation_demo (name, format, model_data, model_sha256, library_versions, model_hmac)
    SELECT p_name, p_format, p_model_data, digest, versions,
           ml_private.model_hmac(k.key, p_name, NULL, versions, p_model_data)
      FROM ml_private.model_signing_key k
    ON CONFLICT (name) DO UPDATE
        SET format = EXCLUDED.format, model_data = EXCLUDED.model_data, model_sha256 = EXCLUDED.model_sha256,
            library_versions = EXCLUDED.library_versions, model_hmac = EXCLUDED.model_hmac, created_at = now();
    RETURN digest;
END;
$$;

-- @block serialisation_demo_verify
-- Do the stored bytes still match the digest taken when they were written? NULL: no such model.
CREATE OR REPLACE FUNCTION serialisation_demo_verify(p_name text)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT encode(sha256(model_data), 'hex') = model_sha256 FROM serialisation_demo WHERE name = p_name
$$;

-- @block serialisation_demo_train
-- Train the talk's LinearRegression inside the server and store it in one of the three formats:
--   pickle  pickle.dumps(model)                — what the talk does
--   skops   skops.io.dumps(model)              — a zip of JSON + arrays; loading runs no pickle code
--   json    intercept and coefficients by name — no Python object at all; SQL alone can predict
-- Features are read as float8 (not NUMERIC -> Decimal), in id order, so training is reproducible.
CREATE OR REPLACE FUNCTION serialisation_demo_train(p_name text, p_format text DEFAULT 'pickle')
RETURNS text
LANGUAGE plpython3u
AS $$
import json
import numpy as np
from sklearn.linear_model import LinearRegression

FEATURES = ["age", "income", "credit_score"]
if p_name is None:
    plpy.error("serialisation_demo_train needs a name for the model",
               hint="For example: SELECT serialisation_demo_train('server_pickle', 'pickle');")
if p_format not in ("pickle", "skops", "json"):
    plpy.error(f"unknown format {p_format!r}", hint="Use one of: pickle, skops, json.")

rows = plpy.execute(
    "SELECT age::float8 AS age, income::float8 AS income, credit_score::float8 AS credit_score,"
    " purchase_amount::float8 AS purchase_amount FROM customer_data"
    " WHERE age IS NOT NULL AND income IS NOT NULL AND credit_score IS NOT NULL AND purchase_amount IS NOT NULL"
    " ORDER BY id")
if rows.nrows() < len(FEATURES) + 1:
    plpy.error(f"customer_data has {rows.nrows()} complete rows; a linear model of 3 features needs at least 4",
               hint="Load sample data first: SELECT load_sample_customers(2000, 42);")
X = np.array([[r[f] for f in FEATURES] for r in rows])
y = np.array([r["purchase_amount"] for r in rows])
model = LinearRegression().fit(X, y)

if p_format == "pickle":
    import pickle
    data = pickle.dumps(model)
elif p_format == "skops":
    import skops.io as sio
    data = sio.dumps(model)
else:
    data = json.dumps({"model": "LinearRegression", "features": FEATURES,
                       "intercept": float(model.intercept_),
                       "coefficients": dict(zip(FEATURES, map(float, model.coef_)))}).encode()

store = plpy.prepare("SELECT serialisation_demo_store($1, $2, $3) AS digest", ["text", "text", "bytea"])
return store.execute([p_name, p_format, data])[0]["digest"]
$$;

-- @block serialisation_demo_predict
-- Load a stored model inside the server and predict one purchase amount. The bytes go through
-- the kit's one loader (pgmlkit_server.loader, also behind ml_load_model in notebook 04), which
-- checks, before any bytes are turned back into an object:
--   1. their size;
--   2. their sha256 against the digest taken when they were written (else: tampered or corrupt);
--   3. their signature: an HMAC made when they were stored, with a key only superusers can read —
--      someone who rewrote the bytes *and* their digest cannot make it;
--   4. the scikit-learn (numpy, scipy) they were written with against this server's;
-- then, loading: pickle turns scikit-learn's own InconsistentVersionWarning into an error, so a
-- pickle whose recorded version differs is refused even if the row's metadata says otherwise;
-- skops refuses every type that is not trusted by default unless it is on SKOPS_ALLOWED.
-- Never point pickle.loads at bytes that a role you do not trust can write: see notebook 03.
-- (Loaded fresh on every call, to keep the lesson short; notebook 05 caches models per session.)
CREATE OR REPLACE FUNCTION serialisation_demo_predict(
    p_name text, age double precision, income double precision, credit_score double precision)
RETURNS double precision
LANGUAGE plpython3u STABLE
AS $$
import json
import numpy as np
from pgmlkit_server import loader

SKOPS_ALLOWED = frozenset()     # extra types this loader accepts; LinearRegression needs none

if p_name is None:
    plpy.error("serialisation_demo_predict needs a model name",
               hint="SELECT name FROM serialisation_demo; lists the stored models.")
if age is None or income is None or credit_score is None:
    return None                 # no prediction without all three features
if "row_plan" not in SD:
    SD["row_plan"] = plpy.prepare(
        "SELECT format, model_data, model_sha256, library_versions::text AS library_versions, model_hmac,"
        "       (SELECT key FROM ml_private.model_signing_key) AS key"
        "  FROM serialisation_demo WHERE name = $1", ["text"])
found = SD["row_plan"].execute([p_name])
if not found:
    plpy.error(f"no model named {p_name!r} in serialisation_demo",
               hint="Store one first, e.g. SELECT serialisation_demo_train('server_pickle', 'pickle');")
row = found[0]
stored = loader.Registered(p_name, None, row["model_sha256"], row["library_versions"], row["model_hmac"], row["format"])
inputs = {"age": age, "income": income, "credit_score": credit_score}
try:
    if row["format"] == "json":     # no Python object to rebuild: just numbers, matched by feature name
        loader.verify(row["model_data"], stored, row["key"])
        doc = json.loads(row["model_data"])
        return float(doc["intercept"] + sum(doc["coefficients"][f] * inputs[f] for f in doc["features"]))
    model = loader.load_verified(row["model_data"], stored, row["key"], skops_allowed=SKOPS_ALLOWED)
except loader.ModelRefused as refusal:
    plpy.error(refusal.message, hint=refusal.hint, sqlstate=refusal.sqlstate)

X = np.array([[inputs["age"], inputs["income"], inputs["credit_score"]]], dtype=np.float64)
return float(model.predict(X)[0])       # a plain float, not numpy.float64 (notebook 01)
$$;

-- @block serialisation_demo_predict_sql
-- The JSON format needs no Python at all: the prediction is arithmetic on the stored numbers,
-- in plain SQL, and the digest is still checked (a mismatch gives NULL, never a wrong number).
CREATE OR REPLACE FUNCTION serialisation_demo_predict_sql(
    p_name text, age double precision, income double precision, credit_score double precision)
RETURNS double precision
LANGUAGE sql STABLE
AS $$
    SELECT (m ->> 'intercept')::float8
         + (m -> 'coefficients' ->> 'age')::float8          * age
         + (m -> 'coefficients' ->> 'income')::float8       * income
         + (m -> 'coefficients' ->> 'credit_score')::float8 * credit_score
      FROM (SELECT convert_from(model_data, 'UTF8')::jsonb AS m
              FROM serialisation_demo
             WHERE name = p_name AND format = 'json'
               AND encode(sha256(model_data), 'hex') = model_sha256) AS verified
$$;
