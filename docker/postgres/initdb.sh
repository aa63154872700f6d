#!/usr/bin/env bash
# pg-ml-kit: the superuser step of the Docker image. The official entrypoint runs it once, when the
# data volume is new (as /docker-entrypoint-initdb.d/10-pg-ml-kit.sh, with a socket-only server);
# scripts/docker_db.sh reset runs it again. Idempotent. Same bootstrap as the native path:
# scripts/bootstrap.sql with the psql variables kit_user, kit_password, kit_db.
set -euo pipefail
: "${KIT_USER:?}" "${KIT_PASSWORD:?}" "${KIT_DB:?}" "${PGDATA:?}"
superuser="${POSTGRES_USER:-postgres}"
# As the cluster's superuser over the unix socket, like the entrypoint's own psql calls.
su_psql() {
    PGHOST='' PGHOSTADDR='' psql -X -q -v ON_ERROR_STOP=1 --username "$superuser" --no-password --dbname postgres "$@"
}

# Server settings: the image's (pg_cron, workers, connections) and the one that names this volume's
# database. Read at the next start, which for a new volume is the real start right after this script.
cat > "$PGDATA/pg-ml-kit.conf" <<CONF
# Written by docker/postgres/initdb.sh (pg-ml-kit); edits are overwritten.
include = '/etc/pg-ml-kit/postgresql.conf'
cron.database_name = '$KIT_DB'
CONF
grep -qxF "include_if_exists = 'pg-ml-kit.conf'" "$PGDATA/postgresql.conf" \
    || echo "include_if_exists = 'pg-ml-kit.conf'" >> "$PGDATA/postgresql.conf"

su_psql -v kit_user="$KIT_USER" -v kit_password="$KIT_PASSWORD" -v kit_db="$KIT_DB" \
    -f /opt/pg-ml-kit/bootstrap.sql

# The image insists on a POSTGRES_PASSWORD to initialise; the kit then takes it away, so that, as
# in the native cluster, the postgres superuser can only log in from inside (docker compose exec
# db psql -U postgres) and the workshop role is the one door from outside.
if [[ "$superuser" != "$KIT_USER" ]]; then
    su_psql -c "ALTER ROLE \"$superuser\" PASSWORD NULL"
fi
echo "pg-ml-kit: role '$KIT_USER', database '$KIT_DB' and plpython3u ready"
