#!/usr/bin/env bash
# The kit's database, with or without Docker. Usage: db.sh up | stop | reset | url
#   KIT_BACKEND=auto (default: Docker when an engine answers, else native) | docker | native | external
#   external: use the server at DATABASE_URL as it is (only checked, never changed).
# `db.sh up` prints the connection URL as its last line of output, so scripts can capture it.
set -euo pipefail
source "$(dirname "$0")/common.sh"

backend="${KIT_BACKEND:-auto}"
if [[ "$backend" == auto ]]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then backend=docker; else backend=native; fi
fi
case "$backend" in
    docker|native|external) ;;
    *) fail "KIT_BACKEND=$backend is not one of auto, docker, native, external." "Unset KIT_BACKEND, or set one of those." ;;
esac
url="${DATABASE_URL:-$KIT_URL}"

# One up/reset/destroy of the native cluster at a time: the notebook lanes reset two databases at
# once, and one reset's bootstrap (ALTER ROLE) must not meet another's checks.
if [[ "$backend" == native && "${1:-up}" =~ ^(up|reset|destroy)$ ]]; then run_locked "$KIT_CLUSTER" "$0" "$@"; fi

# One DO block that imports what the lessons need, inside the server: the proof that PL/Python
# sees the pinned packages.
check_server() {
    local out
    # A failed query is reported as what it is, never as a missing extension.
    if ! out=$(psql "$url" -XAtq -v ON_ERROR_STOP=1 -c "SELECT 1 FROM pg_extension WHERE extname = 'plpython3u'" 2>&1); then
        fail "Cannot connect to $url: ${out##*FATAL:  }" \
             "Start the database with make db (KIT_BACKEND=$backend), or correct DATABASE_URL."
    fi
    if [[ "$out" != 1 ]]; then
        fail "The extension plpython3u is missing in $url." \
             "make db-reset re-runs the superuser step (or, as a superuser: CREATE EXTENSION plpython3u;)."
    fi
    if ! out=$(psql "$url" -XAtq -v ON_ERROR_STOP=1 -c 'DO $$ import sklearn, numpy, pandas $$ LANGUAGE plpython3u' 2>&1); then
        fail "PostgreSQL's PL/Python cannot import scikit-learn/numpy/pandas: $(echo "$out" | grep -m1 -E 'Error|ERROR')" \
             "The server-side environment is missing or broken: make db-destroy && make db rebuilds it from requirements/server.txt."
    fi
}

case "${1:-up}" in
    up)
        case "$backend" in
            native) "$KIT_ROOT/scripts/native_db.sh" up ;;
            docker) "$KIT_ROOT/scripts/docker_db.sh" up ;;
            external) [[ -n "${DATABASE_URL:-}" ]] || fail "KIT_BACKEND=external needs DATABASE_URL." "DATABASE_URL=postgresql://user:pass@host:port/db KIT_BACKEND=external make db" ;;
        esac
        check_server
        step "Database ready ($backend): PostgreSQL + plpython3u + the pinned scikit-learn"
        echo "$url"
        ;;
    stop|reset|destroy)
        case "$backend" in
            native)
                # The replica goes first: without its primary it would be left running, streaming nothing.
                if [[ "$1" == destroy ]]; then "$KIT_ROOT/scripts/replica.sh" destroy; fi
                "$KIT_ROOT/scripts/native_db.sh" "$1"
                # A replica that exists follows the reset primary (or is rebuilt): never stale.
                if [[ "$1" == reset ]] && "$KIT_ROOT/scripts/replica.sh" exists; then "$KIT_ROOT/scripts/replica.sh" up >/dev/null; fi
                ;;
            docker) "$KIT_ROOT/scripts/docker_db.sh" "$1" ;;
            external) fail "KIT_BACKEND=external: the kit does not manage that server." "Use your own tools for $url." ;;
        esac
        if [[ "$1" == reset ]]; then check_server; echo "$url"; fi
        ;;
    url) echo "$url" ;;
    *) echo "usage: $0 up|stop|reset|destroy|url" >&2; exit 2 ;;
esac
