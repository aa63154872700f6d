#!/usr/bin/env bash
# Native PostgreSQL for the kit, without Docker (Debian/Ubuntu): the packages, a kit-owned cluster
# on KIT_PORT, and a server-side virtual environment built with the server's own Python and put
# on PL/Python's path through PYTHONPATH.
#   root          -> a Debian cluster "$KIT_CLUSTER" owned by the postgres user (pg_createcluster)
#   ordinary user -> initdb in .kit/$KIT_CLUSTER, run as you; sudo is used for apt-get only
# Usage: native_db.sh up | stop | reset | status | destroy
set -euo pipefail
source "$(dirname "$0")/common.sh"

PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
# pgbouncer: notebook 08 and `make bench` measure connection churn through it (started on a free port
# only while they measure; the package's own service is disabled after installing, see ensure_packages).
PACKAGES=("postgresql-$PG_MAJOR" "postgresql-plpython3-$PG_MAJOR" "postgresql-$PG_MAJOR-cron"
          "postgresql-client-$PG_MAJOR" "python$PYTHON_MINOR-venv" pgbouncer)

if [[ $EUID -eq 0 ]]; then
    AS_ROOT=1
    # One per cluster (readable by the postgres user), so a second cluster — CI's own, say — never
    # shares or overwrites the packages of yours, and destroy removes exactly what up made.
    SERVER_VENV="/var/lib/pg-ml-kit/$KIT_CLUSTER/server-venv-py$PYTHON_MINOR"
    CONF_DIR="/etc/postgresql/$PG_MAJOR/$KIT_CLUSTER"
    SOCKET_DIR=/var/run/postgresql
else
    AS_ROOT=0
    KIT_HOME="$KIT_ROOT/.kit"
    SERVER_VENV="$KIT_HOME/$KIT_CLUSTER-server-venv-py$PYTHON_MINOR"
    PGDATA="$KIT_HOME/$KIT_CLUSTER"        # one folder per cluster name, as pg_createcluster does for root
    PG_LOG="$KIT_HOME/$KIT_CLUSTER.log"
    SOCKET_DIR="/tmp/pg-ml-kit-$(id -u)"   # short path: unix socket paths are limited to 107 bytes
fi
SITE_PACKAGES="$SERVER_VENV/lib/python$PYTHON_MINOR/site-packages"

# Run psql as the cluster's superuser, over the unix socket.
superuser_psql() {
    if (( AS_ROOT )); then
        # From /, and with files passed on stdin: the postgres user may not enter the kit's folder
        # (a clone under a private directory such as mktemp -d).
        (cd / && PGOPTIONS='-c client_min_messages=warning' \
            runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$KIT_PORT" "$@")
    else
        PGOPTIONS='-c client_min_messages=warning' \
            psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$KIT_PORT" -d postgres "$@"
    fi
}

ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    (( ${#missing[@]} == 0 )) && { info "packages: PostgreSQL $PG_MAJOR, PL/Python, pg_cron, pgbouncer present"; return; }
    if ! command -v apt-get >/dev/null || [[ ! -f /etc/debian_version ]]; then
        fail "No Docker engine answers, and this is not Debian/Ubuntu, so the kit cannot install PostgreSQL $PG_MAJOR with PL/Python natively." \
             "Install and start Docker Desktop/Engine, then run the same make command again; or point the kit at your own PostgreSQL $PG_MAJOR with plpython3u and Python $PYTHON_MINOR: KIT_BACKEND=external DATABASE_URL=postgresql://... make lab"
    fi
    local sudo=""
    (( AS_ROOT )) || sudo="sudo"
    step "Installing ${missing[*]} with apt-get (a minute or two, once)"
    $sudo apt-get update -q >&2 || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
        || fail "apt-get could not install ${missing[*]}." \
                "This release may not carry PostgreSQL $PG_MAJOR: add the PostgreSQL apt repository (see https://wiki.postgresql.org/wiki/Apt), or use Docker."
    # Debian starts a system-wide pgbouncer on port 6432 after installing it; the kit starts its own when
    # it measures, so it leaves none running on your machine.
    if [[ " ${missing[*]} " == *" pgbouncer "* ]] && command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        $sudo systemctl disable --now pgbouncer.service >/dev/null 2>&1 || true
    fi
}

# The Python minor that PL/Python is linked against is the only one whose wheels it can import.
check_server_python() {
    local so="/usr/lib/postgresql/$PG_MAJOR/lib/plpython3.so" linked
    linked=$(ldd "$so" | grep -o 'libpython3\.[0-9]*' | head -1 | sed 's/^lib//')
    if [[ "$linked" != "python$PYTHON_MINOR" ]]; then
        fail "PL/Python here is linked against $linked, but the kit pins Python $PYTHON_MINOR (kit.env) so that pickles and wheels match the Docker image." \
             "Use Docker (KIT_BACKEND=docker make lab), whose image runs Python $PYTHON_MINOR, or run the kit on Debian 12 / a distribution whose PL/Python uses Python $PYTHON_MINOR."
    fi
    SERVER_PYTHON="/usr/bin/python$PYTHON_MINOR"
}

ensure_server_venv() {
    local stamp
    stamp=$(pins_stamp "$KIT_ROOT/requirements/server.txt")
    if [[ -f "$SERVER_VENV/.kit-pins" && "$(cat "$SERVER_VENV/.kit-pins")" == "$stamp" ]]; then
        info "server-side Python environment matches requirements/server.txt ($SERVER_VENV)"
        return
    fi
    step "Building the server-side Python environment with $SERVER_PYTHON (the Python PL/Python runs)"
    info "from requirements/server.txt into $SERVER_VENV"
    rm -rf "$SERVER_VENV"
    mkdir -p "$(dirname "$SERVER_VENV")"
    "$SERVER_PYTHON" -m venv "$SERVER_VENV"
    "$SERVER_VENV/bin/pip" install --quiet --upgrade pip >&2 2>/dev/null || true
    if ! "$SERVER_VENV/bin/pip" install --progress-bar off --no-input -r "$KIT_ROOT/requirements/server.txt" 2>&1 \
        | { grep -Ev 'is ignored: it is neither|^Requirement already' || true; } | sed 's/^/    /' >&2
    then
        fail "pip could not install requirements/server.txt into $SERVER_VENV." "Check the network access to PyPI and run make db again."
    fi
    echo "$stamp" > "$SERVER_VENV/.kit-pins"
    chmod -R a+rX "$SERVER_VENV"
}

# The kit's server-side library (src/pgmlkit_server), copied — not linked — into the venv: the
# postgres user may not be able to read the clone. The copy carries the pin file it was installed
# with, so the library can report a server whose packages drifted from it.
ensure_server_library() {
    local source="$KIT_ROOT/src/pgmlkit_server" target="$SITE_PACKAGES/pgmlkit_server" stamp
    stamp=$( (cd "$KIT_ROOT" && find src/pgmlkit_server -name '*.py' -print0 | sort -z | xargs -0 cat; cat requirements/server.txt) | sha256sum | cut -d' ' -f1)
    if [[ -f "$target/.kit-stamp" && "$(cat "$target/.kit-stamp")" == "$stamp" ]]; then
        info "server-side library pgmlkit_server matches src/pgmlkit_server"
        return
    fi
    step "Installing the kit's server-side library src/pgmlkit_server into $SITE_PACKAGES"
    rm -rf "$target"
    mkdir -p "$target"
    (cd "$source" && find . -name '*.py' -exec cp --parents {} "$target/" \;)
    cp "$KIT_ROOT/requirements/server.txt" "$target/pins.txt"
    echo "$stamp" > "$target/.kit-stamp"
    chmod -R a+rX "$target"
}

# Settings shared by both modes. Threads: one BLAS thread per backend, because PostgreSQL already
# runs one process per connection and a thread pool per backend oversubscribes the cores.
kit_conf() {
    cat <<CONF
# Written by scripts/native_db.sh (pg-ml-kit); edits are overwritten.
port = $KIT_PORT
listen_addresses = 'localhost'
shared_preload_libraries = 'pg_cron'
cron.database_name = '$KIT_DB'
# Jobs run as background workers inside the server, so they need no password over TCP.
cron.use_background_workers = on
max_worker_processes = 16
max_connections = 100
CONF
}

write_if_changed() {  # write_if_changed FILE  (content on stdin); returns 0 if the file changed
    local new; new=$(cat)
    if [[ -f "$1" && "$(cat "$1")" == "$new" ]]; then return 1; fi
    printf '%s\n' "$new" > "$1"
}

cluster_running() {
    if (( AS_ROOT )); then
        pg_lsclusters -h | awk -v v="$PG_MAJOR" -v c="$KIT_CLUSTER" '$1==v && $2==c {print $4}' | grep -q online
    else
        [[ -f "$PGDATA/PG_VERSION" ]] && "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
    fi
}

fail_if_port_taken() {
    if port_in_use "$KIT_PORT"; then
        fail "Port $KIT_PORT (the kit's port) is already taken by another program." \
             "Stop that program (\`ss -ltnp 'sport = :$KIT_PORT'\` shows which), or pick another port for the kit: KIT_PORT=5599 make db (and DATABASE_URL follows)."
    fi
}

# Nothing is created, built, rewritten or restarted before we know KIT_PORT is free (or already ours).
check_port_before_changes() {
    if (( AS_ROOT )); then
        local current_port status
        read -r current_port status < <(pg_lsclusters -h | awk -v v="$PG_MAJOR" -v c="$KIT_CLUSTER" '$1==v && $2==c {print $3, $4}') || true   # no such cluster yet: both empty
        if [[ "$current_port" != "$KIT_PORT" || "$status" != online* ]]; then fail_if_port_taken; fi
    elif ! cluster_running || [[ "$(sed -n 4p "$PGDATA/postmaster.pid")" != "$KIT_PORT" ]]; then
        fail_if_port_taken
    fi
}

ensure_cluster_root() {
    if ! pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "$PG_MAJOR/$KIT_CLUSTER"; then
        step "Creating PostgreSQL $PG_MAJOR cluster '$KIT_CLUSTER' (owner: postgres) on port $KIT_PORT"
        pg_createcluster "$PG_MAJOR" "$KIT_CLUSTER" -p "$KIT_PORT" -- \
            --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >&2
    fi
    local changed=0
    mkdir -p "$CONF_DIR/conf.d"
    kit_conf | write_if_changed "$CONF_DIR/conf.d/pg-ml-kit.conf" && changed=1
    # pg_ctlcluster exports these to the server, so every backend's PL/Python sees them.
    write_if_changed "$CONF_DIR/environment" <<ENV && changed=1 || true
# Written by scripts/native_db.sh (pg-ml-kit): the server-side packages on PL/Python's path.
PYTHONPATH = '$SITE_PACKAGES'
OPENBLAS_NUM_THREADS = '1'
OMP_NUM_THREADS = '1'
MKL_NUM_THREADS = '1'
ENV
    if cluster_running; then
        if (( changed )); then step "Restarting cluster '$KIT_CLUSTER' to apply the kit's settings"; pg_ctlcluster "$PG_MAJOR" "$KIT_CLUSTER" restart; fi
    else
        fail_if_port_taken
        step "Starting cluster '$KIT_CLUSTER' on port $KIT_PORT"
        pg_ctlcluster "$PG_MAJOR" "$KIT_CLUSTER" start || fail "PostgreSQL did not start." "Read /var/log/postgresql/postgresql-$PG_MAJOR-$KIT_CLUSTER.log for the reason."
    fi
}

ensure_cluster_user() {
    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        step "Creating a PostgreSQL $PG_MAJOR cluster in $PGDATA (runs as $(id -un))"
        mkdir -p "$KIT_HOME"
        # peer: over the socket only you get in, as the superuser of your own name. (trust would hand
        # that superuser, and through plpython3u your account, to every local user.)
        "$PG_BIN/initdb" -D "$PGDATA" --auth-local=peer --auth-host=scram-sha-256 \
            --encoding=UTF8 --locale=C.UTF-8 >"$KIT_HOME/$KIT_CLUSTER-initdb.log" 2>&1 \
            || fail "initdb failed." "Read $KIT_HOME/$KIT_CLUSTER-initdb.log."
        echo "include_if_exists = 'pg-ml-kit.conf'" >> "$PGDATA/postgresql.conf"
    fi
    # The socket directory is yours alone (it is in /tmp, where anyone could have made it first).
    mkdir -p -m 700 "$SOCKET_DIR"
    if [[ -L "$SOCKET_DIR" || ! -O "$SOCKET_DIR" ]]; then
        fail "$SOCKET_DIR, the kit's socket directory, belongs to another user." \
             "Remove it (as its owner or with sudo), then run make db again."
    fi
    chmod 700 "$SOCKET_DIR"
    local changed=0
    { kit_conf; echo "unix_socket_directories = '$SOCKET_DIR'"; } | write_if_changed "$PGDATA/pg-ml-kit.conf" && changed=1
    if cluster_running && (( changed )); then
        step "Restarting PostgreSQL to apply the kit's settings"
        "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null
    fi
    if ! cluster_running; then
        step "Starting PostgreSQL on port $KIT_PORT (log: ${PG_LOG#"$KIT_ROOT/"})"
        PYTHONPATH="$SITE_PACKAGES" OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
            "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w start >/dev/null \
            || fail "PostgreSQL did not start." "Read $PG_LOG for the reason."
    fi
}

# pg_cron's scheduler exits when its database is dropped and is only started again with the server.
restart_cluster() {
    step "Restarting the kit's PostgreSQL (so pg_cron's scheduler starts on the new database)"
    if (( AS_ROOT )); then
        pg_ctlcluster "$PG_MAJOR" "$KIT_CLUSTER" restart -m fast
    else
        PYTHONPATH="$SITE_PACKAGES" OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
            "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -m fast -w restart >/dev/null
    fi
}

bootstrap() {
    step "Creating role '$KIT_USER', database '$KIT_DB' and extension plpython3u (superuser step)"
    superuser_psql -d postgres -v kit_user="$KIT_USER" -v kit_password="$KIT_PASSWORD" -v kit_db="$KIT_DB" \
        -f - < "$KIT_ROOT/scripts/bootstrap.sql" >&2
}

case "${1:-up}" in
    up)
        ensure_packages
        check_server_python
        check_port_before_changes
        ensure_server_venv
        ensure_server_library
        if (( AS_ROOT )); then ensure_cluster_root; else ensure_cluster_user; fi
        bootstrap
        ;;
    stop)
        if cluster_running; then
            step "Stopping the kit's PostgreSQL"
            if (( AS_ROOT )); then pg_ctlcluster "$PG_MAJOR" "$KIT_CLUSTER" stop; else "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null; fi
        else
            info "the kit's PostgreSQL is not running"
        fi
        ;;
    reset)
        cluster_running || fail "The kit's PostgreSQL is not running." "make db"
        step "Dropping database '$KIT_DB' (all workshop tables, functions and models)"
        superuser_psql -d postgres -c "DROP DATABASE IF EXISTS \"$KIT_DB\" WITH (FORCE)"
        bootstrap
        # Only the database pg_cron runs in needs the restart; KIT_RESET_WITHOUT_RESTART=1 skips it
        # (scripts/test_notebooks.sh, while other databases of the cluster are in use).
        if [[ "$(superuser_psql -At -c 'SHOW cron.database_name')" == "$KIT_DB" && "${KIT_RESET_WITHOUT_RESTART:-0}" != 1 ]]; then
            restart_cluster
        fi
        ;;
    status)
        cluster_running && echo running || { echo stopped; exit 1; }
        ;;
    destroy)
        step "Removing the kit's cluster and server-side environment"
        if (( AS_ROOT )); then
            pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "$PG_MAJOR/$KIT_CLUSTER" \
                && pg_dropcluster --stop "$PG_MAJOR" "$KIT_CLUSTER"
        else
            cluster_running && "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null
            rm -rf "$PGDATA" "$PG_LOG" "$KIT_HOME/$KIT_CLUSTER-initdb.log"
        fi
        rm -rf "$SERVER_VENV"
        (( AS_ROOT )) && rmdir "/var/lib/pg-ml-kit/$KIT_CLUSTER" 2>/dev/null || true
        ;;
    *) echo "usage: $0 up|stop|reset|status|destroy" >&2; exit 2 ;;
esac
