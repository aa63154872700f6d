#!/usr/bin/env bash
# The kit's database in Docker: the `db` service of docker/docker-compose.yml (the official postgres
# image + PL/Python + pg_cron + requirements/server.txt), published on localhost:KIT_PORT.
# Called by scripts/db.sh. Usage: docker_db.sh up | stop | reset | status | destroy
set -euo pipefail
source "$(dirname "$0")/common.sh"   # exports kit.env, which the compose file interpolates

# The host user, so files the lab container writes into the bind-mounted repository stay yours.
KIT_UID="${KIT_UID:-$(id -u)}" KIT_GID="${KIT_GID:-$(id -g)}"
export KIT_UID KIT_GID
HEALTH_TIMEOUT="${KIT_DOCKER_TIMEOUT:-180}"

if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
    fail "KIT_BACKEND=docker, but no Docker engine answers (\`docker info\` fails)." \
         "Start Docker Desktop/Engine and run the command again, or use the native path on Debian/Ubuntu: KIT_BACKEND=native make db"
fi
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    fail "Docker answers, but neither \`docker compose\` nor \`docker-compose\` is installed." \
         "Install the Docker Compose plugin (Docker Desktop has it), or use the native path: KIT_BACKEND=native make db"
fi
compose+=(--project-name pg-ml-kit --file "$KIT_ROOT/docker/docker-compose.yml")

container() { "${compose[@]}" ps --all --quiet db 2>/dev/null | head -1; }
state() {  # running | exited | ... | absent
    local id; id=$(container)
    if [[ -z "$id" ]]; then echo absent; else docker inspect --format '{{.State.Status}}' "$id"; fi
}

wait_healthy() {
    local id status waited=0
    id=$(container)
    info "waiting for the health check (PL/Python imports scikit-learn, numpy, pandas)"
    while :; do
        status=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
        case "$status" in
            healthy) return ;;
            unhealthy|exited|dead)
                "${compose[@]}" logs --tail 30 db >&2 || true
                fail "The database container is $status." \
                     "Read the log above (\`${compose[*]} logs db\`); make db-destroy && make db rebuilds the image and the volume." ;;
        esac
        if (( waited >= HEALTH_TIMEOUT )); then
            fail "The database container is not healthy after ${HEALTH_TIMEOUT} s (status: $status)." \
                 "Read \`${compose[*]} logs db\`; on a slow machine allow more time: KIT_DOCKER_TIMEOUT=600 make db"
        fi
        sleep 2; waited=$((waited + 2))
    done
}

published_port() {  # the host port of the running db container, if any
    local id; id=$(container)
    [[ -n "$id" ]] && docker port "$id" 5432/tcp 2>/dev/null | head -1 | sed 's/.*://'
}

up() {
    # Before anything is rebuilt or recreated: KIT_PORT must be free, unless it is already ours.
    if [[ "$(published_port || true)" != "$KIT_PORT" ]] && port_in_use "$KIT_PORT"; then
        fail "Port $KIT_PORT (the kit's port) is already taken by another program." \
             "Stop that program (\`ss -ltnp 'sport = :$KIT_PORT'\` shows which), or pick another port for the kit: KIT_PORT=5599 make db (and DATABASE_URL follows)."
    fi
    step "Building the database image: PostgreSQL $PG_MAJOR + PL/Python + requirements/server.txt (minutes the first time, cached after)"
    "${compose[@]}" build db >&2 \
        || fail "The database image did not build." "Read the build log above; check access to Docker Hub, the PostgreSQL apt repository and PyPI."
    step "Starting the database container on localhost:$KIT_PORT"
    "${compose[@]}" up --detach db >&2 \
        || fail "The database container did not start." "Read the message above; \`${compose[*]} logs db\` shows the server's log."
    wait_healthy
}

case "${1:-up}" in
    up) up ;;
    stop)
        step "Stopping the kit's containers"
        "${compose[@]}" stop >&2
        ;;
    reset)
        [[ "$(state)" == running ]] || fail "The kit's database container is not running." "make db"
        step "Dropping database '$KIT_DB' (all workshop tables, functions and models)"
        "${compose[@]}" exec -T --user postgres db \
            psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS \"$KIT_DB\" WITH (FORCE)" >&2
        "${compose[@]}" exec -T --user postgres db /docker-entrypoint-initdb.d/10-pg-ml-kit.sh >&2
        # pg_cron's scheduler ends with the database it runs in; a restart brings it back.
        step "Restarting the database container (pg_cron's scheduler lives in the dropped database)"
        "${compose[@]}" restart db >&2
        wait_healthy
        ;;
    status)
        s=$(state); echo "$s"; [[ "$s" == running ]]
        ;;
    destroy)
        step "Removing the kit's containers, the database volume and the images built for the kit"
        "${compose[@]}" down --volumes --rmi local --remove-orphans >&2
        ;;
    *) echo "usage: $0 up|stop|reset|status|destroy" >&2; exit 2 ;;
esac
