-- 09 — production hardening: who may do what, model bytes that must be signed before they are
-- unpickled, a model-size limit, inputs outside the training range, and time limits.
-- Apply with: psql "$DATABASE_URL" -f sql/09_hardening.sql
--             (idempotent; needs sql/02, 04, 05, 06 and 07 first; run as a superuser: it changes owners)
-- Apply it LAST, and again after re-applying any earlier file: CREATE OR REPLACE FUNCTION resets
-- a function's SECURITY DEFINER and SET clauses (it keeps owner and grants).
--
-- The role model (roles are cluster-wide; passwords of the two LOGIN roles are demo values):
--   ml_owner   NOLOGIN  owns the registry tables and the schema `ml`; nobody logs in as it.
--   ml_trainer NOLOGIN  may train, promote and roll back — through ml.* functions only.
--   ml_app     NOLOGIN  may call the ml.* prediction functions and INSERT business rows. Nothing else.
--   ml_app_demo / ml_trainer_demo: LOGIN members of ml_app / ml_trainer, for the notebook and tests.
-- The plpython3u functions stay created (and owned) by the superuser that applied sql/04–07;
-- the others reach them only through SECURITY DEFINER wrappers owned by ml_owner. The signing key
-- and the loader that checks it are sql/04's: every model is signed from the first one on.

-- @block roles
-- CREATE ROLE has no IF NOT EXISTS; two sessions applying this file at once could both see a role
-- missing, so a duplicate is caught and ignored. Existing roles are brought to the wanted state.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM (VALUES ('ml_owner', NULL, NULL), ('ml_trainer', NULL, NULL), ('ml_app', NULL, NULL),
                                   ('ml_trainer_demo', 'ml_trainer', 'ml_trainer_demo'),
                                   ('ml_app_demo', 'ml_app', 'ml_app_demo')) AS t(name, member_of, password) LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I', r.name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;                                         -- another database of this cluster made it
        END;
        IF r.password IS NULL THEN
            EXECUTE format('ALTER ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', r.name);
        ELSE
            EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD %L',
                           r.name, r.password);
            IF NOT pg_has_role(r.name, r.member_of, 'MEMBER') THEN
                EXECUTE format('GRANT %I TO %I', r.member_of, r.name);
            END IF;
        END IF;
    END LOOP;
END;
$$;

-- @block default_deny
-- Functions are executable by PUBLIC by default. Take that away from every function of the kit
-- (and from those created later in this database by the role applying this file), then grant
-- explicitly. Superusers are not affected: the notebooks keep working as before.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = 'public'::regnamespace
                AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO ml_owner', f);      -- the definer of the wrappers
    END LOOP;
END;
$$;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- @block registry_owner
-- Model bytes live in these tables: only their owner (and superusers) may write them. Nobody
-- else gets any privilege on them; trainers read metadata through ml_model_history.
ALTER TABLE ml_models             OWNER TO ml_owner;   -- owned sequences follow the table
ALTER TABLE ml_model_versions     OWNER TO ml_owner;
ALTER TABLE ml_model_deployments  OWNER TO ml_owner;
ALTER TABLE ml_prediction_errors  OWNER TO ml_owner;
ALTER TABLE ml_prediction_settings OWNER TO ml_owner;
ALTER TABLE ml_retraining_log     OWNER TO ml_owner;
REVOKE ALL ON ml_models, ml_model_versions, ml_model_deployments, ml_prediction_errors,
              ml_prediction_settings, ml_retraining_log FROM PUBLIC, ml_app, ml_trainer;
-- Under SECURITY DEFINER current_user is ml_owner: record who really asked (the login role).
ALTER TABLE ml_model_versions    ALTER COLUMN trained_by  SET DEFAULT session_user;
ALTER TABLE ml_model_deployments ALTER COLUMN deployed_by SET DEFAULT session_user;
GRANT SELECT ON ml_model_history TO ml_trainer;        -- metrics and versions, no bytes
-- The statement-level trigger (sql/06) writes the predictions back into customer_data.
GRANT SELECT, UPDATE (predicted_purchase, model_version) ON customer_data TO ml_owner;

-- @block business_tables
-- The application inserts business rows and reads them back. It names only the business
-- columns: a prediction or a model_version it supplies itself is refused (column privileges),
-- so every stored prediction comes from the trigger.
REVOKE ALL ON customer_data, transactions FROM ml_app;
GRANT SELECT ON customer_data, transactions TO ml_app;
GRANT INSERT (age, income, credit_score, purchase_amount) ON customer_data TO ml_app;
GRANT INSERT (customer_id, amount, merchant_category, hour_of_day, distance_from_home_km) ON transactions TO ml_app;
GRANT USAGE ON SEQUENCE customer_data_id_seq, transactions_id_seq TO ml_app;

-- @block trigger_functions
-- A trigger runs with the rights of whoever INSERTs. These read the registry and write the
-- error log, which ml_app may not touch: so they run as ml_owner (SECURITY DEFINER), with a
-- fixed search_path so a caller's own objects can never stand in for the registry's.
-- ml_owner cannot change their code: plpython3u is untrusted, only a superuser may replace it.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['predict_purchase_trigger()', 'predict_purchase_batch_trigger()',
                             'flag_fraud_trigger()'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO ml_owner', f);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = public, pg_temp', f);
    END LOOP;
END;
$$;

-- @block ml_private
-- The signing key (sql/04 made it with the registry, so every version is signed from the first
-- one on) lives in a schema only superusers can enter. ml_owner gets USAGE and the right to call
-- the two functions the training path and the audits need — no right on the key's table.
REVOKE ALL ON SCHEMA ml_private FROM PUBLIC;
REVOKE ALL ON ml_private.model_signing_key, ml_private.model_signatures FROM PUBLIC;
GRANT USAGE ON SCHEMA ml_private TO ml_owner;
GRANT EXECUTE ON FUNCTION ml_private.sign_model_version(text, integer),
                         ml_private.model_signature_status(text, integer) TO ml_owner;

-- @block unsigned_versions
-- Hardening signs nothing: a version that is not validly signed now was written around the
-- training path, and the loader refuses it. Say so, with the fix, instead of blessing it.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT v.model_name, v.version, ml_private.model_signature_status(v.model_name, v.version) AS status
               FROM ml_model_versions v
              WHERE ml_private.model_signature_status(v.model_name, v.version) <> 'valid'
              ORDER BY v.model_name, v.version LOOP
        RAISE NOTICE 'model % version % is %: the loader refuses it (retrain it, or delete the row)',
            r.model_name, r.version, r.status;
    END LOOP;
END;
$$;

-- @block ml_registry_limits
-- The size limit (sql/04 made it): the registry's owner may change it, nobody else.
ALTER TABLE ml_registry_limits OWNER TO ml_owner;
REVOKE ALL ON ml_registry_limits FROM PUBLIC;

-- @block ml_input_warnings
-- Inputs a model never saw: compares features (in the model's order) with the training range
-- the registry stored for the deployed version. One row per problem; no rows means in range.
-- A model can extrapolate silently (a linear one always answers): this is how to notice.
CREATE OR REPLACE FUNCTION ml_input_warnings(p_model_name text, p_features double precision[])
RETURNS TABLE (feature text, value double precision, trained_min double precision,
               trained_max double precision, warning text)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    v record;
BEGIN
    SELECT mv.version, mv.features, mv.training_range INTO v
      FROM ml_models m JOIN ml_model_versions mv ON mv.model_name = m.model_name AND mv.version = m.version
     WHERE m.model_name = p_model_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no model named % is deployed', quote_literal(p_model_name)
            USING ERRCODE = 'no_data_found', HINT = 'Train and deploy one: SELECT train_purchase_model();';
    END IF;
    IF v.features IS NULL OR v.training_range IS NULL THEN
        RAISE EXCEPTION 'model % version % has no feature list or training range in the registry',
            quote_literal(p_model_name), v.version
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Models trained by train_purchase_model() record both; retrain with it.';
    END IF;
    RETURN QUERY
    SELECT * FROM (
        SELECT f.name, f.x, (v.training_range -> f.name ->> 0)::float8 AS lo, (v.training_range -> f.name ->> 1)::float8 AS hi,
               CASE WHEN f.name IS NULL THEN format('extra value: the model has %s features', cardinality(v.features))
                    WHEN f.x IS NULL THEN 'missing (NULL)'
                    WHEN f.x = 'NaN'::float8 THEN 'not a number'
                    WHEN f.x IN ('Infinity'::float8, '-Infinity'::float8) THEN 'infinite'
                    WHEN f.x < (v.training_range -> f.name ->> 0)::float8 THEN 'below the training range'
                    WHEN f.x > (v.training_range -> f.name ->> 1)::float8 THEN 'above the training range'
               END AS warning
          FROM unnest(v.features, p_features) WITH ORDINALITY AS f(name, x, n)
         ORDER BY f.n) AS checked
     WHERE checked.warning IS NOT NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION ml_input_warnings(text, double precision[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ml_input_warnings(text, double precision[]) TO ml_owner;

-- @block ml_api
-- The schema the application and the trainers see. Every function is SECURITY DEFINER, owned
-- by ml_owner (never by a superuser), with a fixed search_path; none takes model bytes.
CREATE SCHEMA IF NOT EXISTS ml AUTHORIZATION ml_owner;
ALTER SCHEMA ml OWNER TO ml_owner;
REVOKE ALL ON SCHEMA ml FROM PUBLIC;
GRANT USAGE ON SCHEMA ml TO ml_app, ml_trainer;

-- (Named apart from public.predict_purchase, so a lookup by name alone never finds two.)
DROP FUNCTION IF EXISTS ml.predict_purchase(integer, double precision, integer);
CREATE OR REPLACE FUNCTION ml.predict_purchase_amount(age integer, income double precision, credit_score integer)
RETURNS double precision
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = public, pg_temp
AS $$ SELECT predict_purchase_cached(age, income, credit_score) $$;

CREATE OR REPLACE FUNCTION ml.predict(model_name text, features double precision[])
RETURNS double precision
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = public, pg_temp
AS $$ SELECT ml_predict(model_name, features) $$;

CREATE OR REPLACE FUNCTION ml.predict_batch(model_name text, features double precision[])
RETURNS double precision[]
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = public, pg_temp
AS $$ SELECT ml_predict_batch(model_name, features) $$;

CREATE OR REPLACE FUNCTION ml.input_warnings(model_name text, features double precision[])
RETURNS TABLE (feature text, value double precision, trained_min double precision,
               trained_max double precision, warning text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$ SELECT * FROM ml_input_warnings(model_name, features) $$;

-- Trainers: the training function builds the bytes itself; a trainer chooses only the settings.
CREATE OR REPLACE FUNCTION ml.train_purchase_model(model_name text DEFAULT 'purchase_predictor',
                                                   algorithm text DEFAULT 'linear',
                                                   promote boolean DEFAULT true,
                                                   params jsonb DEFAULT '{}',
                                                   max_rows integer DEFAULT NULL)
RETURNS integer
LANGUAGE sql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$ SELECT train_purchase_model(model_name, algorithm, promote, params, 0.2, 42, max_rows) $$;

CREATE OR REPLACE FUNCTION ml.promote(model_name text, version integer)
RETURNS integer
LANGUAGE sql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$ SELECT ml_promote(model_name, version) $$;

CREATE OR REPLACE FUNCTION ml.rollback(model_name text)
RETURNS integer
LANGUAGE sql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$ SELECT ml_rollback(model_name) $$;

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'ml'::regnamespace LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO ml_owner', f);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END;
$$;
GRANT EXECUTE ON FUNCTION ml.predict_purchase_amount(integer, double precision, integer),
                          ml.predict(text, double precision[]),
                          ml.predict_batch(text, double precision[]),
                          ml.input_warnings(text, double precision[]) TO ml_app, ml_trainer;
GRANT EXECUTE ON FUNCTION ml.train_purchase_model(text, text, boolean, jsonb, integer),
                          ml.promote(text, integer),
                          ml.rollback(text) TO ml_trainer;

-- @block time_limits
-- A prediction runs inside the INSERT that triggered it: a slow model makes every INSERT slow,
-- and holds its locks that long. Bound it where the statement starts — per login role and
-- database (a SET inside a function or trigger is too late: the timer starts with the statement).
-- A timeout cancels the whole statement cleanly: the trigger re-raises it, nothing is half-stored.
-- The limit must exceed a new session's cold start (importing scikit-learn, unpickling: seconds;
-- notebook 09 measures it), or the first INSERT of every new connection would fail.
DO $$
BEGIN
    EXECUTE format('ALTER ROLE ml_app_demo IN DATABASE %I SET statement_timeout = %L', current_database(), '30s');
    EXECUTE format('ALTER ROLE ml_app_demo IN DATABASE %I SET lock_timeout = %L', current_database(), '5s');
    EXECUTE format('ALTER ROLE ml_trainer_demo IN DATABASE %I SET statement_timeout = %L', current_database(), '5min');
END;
$$;

-- @block privilege_audit
-- Every function a role may execute outside the system schemas, with its argument types: the
-- audit the tests run for ml_app (no bytea argument anywhere).
CREATE OR REPLACE FUNCTION ml_callable_functions(p_role text)
RETURNS TABLE (function_name regprocedure, security_definer boolean, takes_bytea boolean, search_path_fixed boolean)
LANGUAGE sql STABLE
AS $$
    SELECT p.oid::regprocedure, p.prosecdef,
           'bytea'::regtype = ANY (p.proargtypes::regtype[]) OR 'bytea'::regtype = ANY (coalesce(p.proallargtypes::regtype[], '{}')),
           coalesce(exists (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%'), false)
      FROM pg_proc p
     WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
       AND has_function_privilege(p_role, p.oid, 'EXECUTE')
       AND has_schema_privilege(p_role, p.pronamespace, 'USAGE')
     ORDER BY p.oid::regprocedure::text
$$;
