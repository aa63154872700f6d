-- pg-ml-kit superuser step: the workshop role, its database and the untrusted language.
-- Run by the cluster's superuser (native: scripts/native_db.sh; Docker: docker/postgres/initdb.sh)
-- with psql variables kit_user, kit_password, kit_db. Idempotent.
--
-- The workshop role is a superuser *of this throw-away, localhost-only workshop cluster*:
-- plpython3u is untrusted, so only a superuser may create functions in it, and creating them
-- is what the workshop is about. Notebook 09 shows the least-privilege roles a real
-- deployment uses instead.
SELECT format('CREATE ROLE %I LOGIN SUPERUSER PASSWORD %L', :'kit_user', :'kit_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'kit_user') \gexec
SELECT format('ALTER ROLE %I LOGIN SUPERUSER PASSWORD %L', :'kit_user', :'kit_password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'kit_db', :'kit_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'kit_db') \gexec

\connect :kit_db
CREATE EXTENSION IF NOT EXISTS plpython3u;
