#!/bin/sh
# pg-ml-kit: health check of the db container (docker-compose.yml runs it every few seconds).
# Healthy = the server accepts TCP connections (the entrypoint's set-up server listens on the socket
# only, so this stays false until the real start) AND its PL/Python imports the pinned packages.
set -eu
pg_isready -q -h 127.0.0.1 -U "$KIT_USER" -d "$KIT_DB"
# The import costs a fresh backend about a second of CPU: prove it once per server start, then only
# ask pg_isready, so the check does not disturb the notebooks' timings. (The packages live in the
# image, so a running server cannot lose them.)
started="$(sed -n '1p;3p' "$PGDATA/postmaster.pid" | tr '\n' ' ')"
marker=/tmp/pg-ml-kit-healthy
if [ "$(cat "$marker" 2>/dev/null)" = "$started" ]; then exit 0; fi
psql -XAtq -h 127.0.0.1 -U "$KIT_USER" -d "$KIT_DB" -c "DO 'import sklearn, numpy, pandas' LANGUAGE plpython3u"
echo "$started" > "$marker"
