#!/usr/bin/env bash
# A hot-standby read replica of the kit's PostgreSQL, by streaming replication, on its own port.
# Training and the model registry stay on the primary (KIT_PORT); the replica replays every change —
# new model versions included — and serves read-only queries, PL/Python predictions among them.
#   root          -> a Debian cluster "$REPLICA_CLUSTER" (pg_lsclusters shows it), data in
#                    /var/lib/postgresql/$PG_MAJOR/$REPLICA_CLUSTER, owned by the postgres user
#   ordinary user -> .kit/$REPLICA_CLUSTER, run as you, next to the primary of scripts/native_db.sh
# The primary is never restarted or reconfigured: its defaults (wal_level = replica, 10 WAL senders)
# and its pg_hba line for replication from 127.0.0.1 are all streaming replication needs.
# Usage: replica.sh up | stop | status | exists | destroy        (REPLICA_PORT: kit.env, 5500)
set -euo pipefail
source "$(dirname "$0")/common.sh"

REPLICA_PORT="${REPLICA_PORT:?kit.env names REPLICA_PORT}"
REPLICA_CLUSTER="${REPLICA_CLUSTER:-${KIT_CLUSTER}_replica}"
REPLICATION_ROLE="${REPLICATION_ROLE:-${KIT_CLUSTER}_replicator}"
SLOT="${REPLICA_CLUSTER}"              # a physical slot: the primary keeps the WAL the replica still needs
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"

if [[ $EUID -eq 0 ]]; then
    AS_ROOT=1
    DATA_DIR="/var/lib/postgresql/$PG_MAJOR/$REPLICA_CLUSTER"
    CONF_DIR="/etc/postgresql/$PG_MAJOR/$REPLICA_CLUSTER"
    PRIMARY_ENV="/etc/postgresql/$PG_MAJOR/$KIT_CLUSTER/environment"
    SOCKET_DIR=/var/run/postgresql
    LOG="/var/log/postgresql/postgresql-$PG_MAJOR-$REPLICA_CLUSTER.log"
    as_owner() { (cd / && runuser -u postgres -- "$@"); }   # from /: postgres may not enter the kit folder
    superuser_psql() { (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$KIT_PORT" -d postgres "$@"); }
else
    AS_ROOT=0
    DATA_DIR="$KIT_ROOT/.kit/$REPLICA_CLUSTER"
    CONF_DIR="$DATA_DIR"
    SOCKET_DIR="/tmp/pg-ml-kit-$(id -u)"
    LOG="$KIT_ROOT/.kit/$REPLICA_CLUSTER.log"
    as_owner() { "$@"; }
    superuser_psql() { psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$KIT_PORT" -d postgres "$@"; }
fi

replica_exists() { [[ -f "$DATA_DIR/PG_VERSION" ]]; }
replica_running() { replica_exists && as_owner "$PG_BIN/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1; }
primary_up() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$KIT_PORT"; }

# The server-side Python packages on PL/Python's path, and one BLAS thread per backend — exactly
# what the primary runs with (root: its Debian environment file; otherwise native_db.sh's values).
server_env() {
    if (( AS_ROOT )) && [[ -f "$PRIMARY_ENV" ]]; then
        grep -E '^[A-Z_]+ *= *' "$PRIMARY_ENV"
    else
        cat <<ENV
PYTHONPATH = '$KIT_ROOT/.kit/$KIT_CLUSTER-server-venv-py$PYTHON_MINOR/lib/python$PYTHON_MINOR/site-packages'
OPENBLAS_NUM_THREADS = '1'
OMP_NUM_THREADS = '1'
MKL_NUM_THREADS = '1'
ENV
    fi
}

# The settings a hot standby must match or exceed, as the primary has them now.
primary_limits() {
    local name value
    for name in max_connections max_worker_processes max_wal_senders max_prepared_transactions max_locks_per_transaction; do
        value=$(superuser_psql -At -c "SHOW $name") || fail "Cannot read $name from the primary on port $KIT_PORT." "Start it first: make db."
        echo "$name = $value"
    done
}

replica_conf() {
    cat <<CONF
# Written by scripts/replica.sh (pg-ml-kit); edits are overwritten.
port = $REPLICA_PORT
listen_addresses = 'localhost'
unix_socket_directories = '$SOCKET_DIR'
cluster_name = '$REPLICA_CLUSTER'
# A standby answers read-only queries while it replays the primary's WAL.
hot_standby = on
# Must be >= the primary's values, or the standby refuses to start (or, once running, pauses
# replay until restarted): read from the primary itself, so a changed primary is followed.
$(primary_limits)
# A query on the standby that conflicts with replay (e.g. VACUUM removed rows it reads) waits up to
# 30 s, then is cancelled. Short prediction queries never notice; hot_standby_feedback = on would
# avoid the cancellations at the price of bloat on the primary.
max_standby_streaming_delay = 30s
CONF
    if (( AS_ROOT )); then
        cat <<CONF
data_directory = '$DATA_DIR'
hba_file = '$CONF_DIR/pg_hba.conf'
ident_file = '$CONF_DIR/pg_ident.conf'
external_pid_file = '/var/run/postgresql/$PG_MAJOR-$REPLICA_CLUSTER.pid'
CONF
    fi
}

replica_hba() {
    cat <<HBA
# Written by scripts/replica.sh (pg-ml-kit): the same doors as the primary, no replication from here.
local   all   all                  peer
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
HBA
}

create_replica() {
    primary_up || fail "The kit's primary PostgreSQL does not answer on port $KIT_PORT, so there is nothing to replicate." \
                       "Start it first: make db (then make replica again)."
    if port_in_use "$REPLICA_PORT"; then
        fail "Port $REPLICA_PORT (REPLICA_PORT) is already taken by another program." \
             "Stop that program (\`ss -ltnp 'sport = :$REPLICA_PORT'\` shows which), or pick another port: REPLICA_PORT=5501 make replica."
    fi
    local password
    password=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)
    step "Creating replication role '$REPLICATION_ROLE' on the primary (port $KIT_PORT)"
    superuser_psql -v role="$REPLICATION_ROLE" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN REPLICATION NOSUPERUSER PASSWORD %L', :'role', :'password') \gexec
SQL
    # A slot left over from an earlier replica of the same name would hold WAL for nobody.
    superuser_psql -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$SLOT' AND NOT active" >/dev/null
    step "Copying the primary with pg_basebackup into $DATA_DIR (a minute for a few hundred MB)"
    as_owner mkdir -p -m 700 "$DATA_DIR"
    local copied=0
    if (umask 077; PGPASSWORD="$password" PGAPPNAME="$REPLICA_CLUSTER" as_owner "$PG_BIN/pg_basebackup" \
            -h 127.0.0.1 -p "$KIT_PORT" -U "$REPLICATION_ROLE" -D "$DATA_DIR" \
            --write-recovery-conf --wal-method=stream --create-slot --slot="$SLOT" --checkpoint=fast \
            --no-password >&2); then copied=1; fi
    if (( ! copied )); then
        as_owner rm -rf "$DATA_DIR"
        fail "pg_basebackup could not copy the primary on port $KIT_PORT." \
             "Read the message above; the primary's pg_hba.conf needs 'host replication all 127.0.0.1/32 scram-sha-256' (Debian's default)."
    fi
    # primary_conninfo (written by -R) names the application, so pg_stat_replication shows which standby it is.
    as_owner sed -i "s/^primary_conninfo = '/primary_conninfo = 'application_name=$REPLICA_CLUSTER /" "$DATA_DIR/postgresql.auto.conf"
    as_owner rm -f "$DATA_DIR/postmaster.opts" "$DATA_DIR/pg-ml-kit.conf"
}

# The replica's settings and its server environment (PL/Python's PYTHONPATH among them): a change in
# either restarts a running replica, so it never keeps serving with packages that moved or are gone.
write_config() {
    local env_file="$CONF_DIR/environment" conf_file="$CONF_DIR/postgresql.conf" before=""
    (( AS_ROOT )) || { env_file="$DATA_DIR/pg-ml-kit.environment"; conf_file="$DATA_DIR/postgresql.conf"; }
    before=$(cat "$conf_file" "$env_file" 2>/dev/null || true)
    if (( AS_ROOT )); then
        mkdir -p "$CONF_DIR"
        replica_conf > "$CONF_DIR/postgresql.conf"
        replica_hba > "$CONF_DIR/pg_hba.conf"
        : > "$CONF_DIR/pg_ident.conf"
        server_env > "$CONF_DIR/environment"
        echo auto > "$CONF_DIR/start.conf"
        echo "pg_ctl_options = ''" > "$CONF_DIR/pg_ctl.conf"
        chown -R postgres:postgres "$CONF_DIR"
    else
        replica_conf > "$DATA_DIR/postgresql.conf"
        replica_hba > "$DATA_DIR/pg_hba.conf"
        : > "$DATA_DIR/pg_ident.conf"
        server_env > "$env_file"
    fi
    if [[ -n "$before" && "$before" != "$(cat "$conf_file" "$env_file")" ]] && replica_running; then
        step "Restarting the replica: its settings or server environment changed (e.g. the primary's limits or packages)"
        if (( AS_ROOT )); then
            pg_ctlcluster "$PG_MAJOR" "$REPLICA_CLUSTER" restart -m fast
        else
            "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m fast -w stop >/dev/null
            start_replica
        fi
    fi
}

start_replica() {
    if port_in_use "$REPLICA_PORT"; then
        fail "Port $REPLICA_PORT (REPLICA_PORT) is already taken by another program." \
             "Stop that program (\`ss -ltnp 'sport = :$REPLICA_PORT'\` shows which), or pick another port: REPLICA_PORT=5501 make replica."
    fi
    step "Starting the replica on port $REPLICA_PORT (log: $LOG)"
    if (( AS_ROOT )); then
        pg_ctlcluster "$PG_MAJOR" "$REPLICA_CLUSTER" start \
            || fail "The replica did not start." "Read $LOG for the reason (make replica-destroy && make replica starts over)."
    else
        mkdir -p -m 700 "$SOCKET_DIR"
        env $(server_env | sed -E "s/ *= *'?([^']*)'?$/=\1/") \
            "$PG_BIN/pg_ctl" -D "$DATA_DIR" -l "$LOG" -w start >/dev/null \
            || fail "The replica did not start." "Read $LOG for the reason (scripts/replica.sh destroy && scripts/replica.sh up starts over)."
    fi
}

# The primary this replica was copied from, by its system identifier: a primary that was destroyed
# and created again has a new one, and a copy of the old one can never stream from it.
copied_from_this_primary() {
    local primary replica
    primary=$(superuser_psql -At -c "SELECT system_identifier FROM pg_control_system()") || return 1
    replica=$(as_owner "$PG_BIN/pg_controldata" "$DATA_DIR" | awk -F': *' '/^Database system identifier/ {print $2}')
    [[ -n "$primary" && "$primary" == "$replica" ]]
}

remove_replica_data() {
    if replica_running; then
        if (( AS_ROOT )); then pg_ctlcluster "$PG_MAJOR" "$REPLICA_CLUSTER" stop -m fast
        else "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m fast stop >/dev/null; fi
    fi
    as_owner rm -rf "$DATA_DIR"
}

streaming() {
    [[ "$(PGPASSWORD="$KIT_PASSWORD" psql -XAtq -h 127.0.0.1 -p "$REPLICA_PORT" -U "$KIT_USER" -d "$KIT_DB" \
          -c "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" == streaming ]]
}

wait_for_streaming() {
    local i
    for i in $(seq 1 $(( ${REPLICA_STREAM_TIMEOUT:-30} * 2 ))); do
        if streaming; then
            info "streaming from the primary on port $KIT_PORT; read-only queries: postgresql://$KIT_USER:***@localhost:$REPLICA_PORT/$KIT_DB"
            return 0
        fi
        sleep 0.5
    done
    return 1
}

# One replica.sh at a time per replica: the notebook lanes of scripts/test_notebooks.sh reset their
# databases at once, and each reset runs `up`. Unserialised, one run would read the config files the
# other was half-way through rewriting, see a "change", and restart the replica under it.
case "${1:-up}" in up|stop|destroy) run_locked "$REPLICA_CLUSTER" "$0" "$@" ;; esac
case "${1:-up}" in
    up)
        if replica_exists && ! primary_up; then
            fail "The kit's primary PostgreSQL does not answer on port $KIT_PORT." "Start it first: make db."
        fi
        if replica_exists && ! copied_from_this_primary; then
            step "The replica is a copy of an earlier primary (the cluster was destroyed and made again): rebuilding it"
            remove_replica_data
        fi
        for attempt in first repair; do
            replica_exists || create_replica
            write_config
            if replica_running; then info "the replica is already running on port $REPLICA_PORT"; else start_replica; fi
            if wait_for_streaming; then break; fi
            [[ "$attempt" == first ]] || fail "The replica was rebuilt but still does not stream from the primary." "Read $LOG for the reason."
            # e.g. the WAL it needs is gone: a fresh copy is the repair (the primary's data is untouched).
            step "The replica does not stream from the primary (log: $LOG): rebuilding it from a fresh copy"
            remove_replica_data
        done
        echo "postgresql://$KIT_USER:$KIT_PASSWORD@localhost:$REPLICA_PORT/$KIT_DB"
        ;;
    exists)
        replica_exists
        ;;
    stop)
        if replica_running; then
            step "Stopping the replica (port $REPLICA_PORT); the primary keeps its WAL for it in slot '$SLOT'"
            if (( AS_ROOT )); then pg_ctlcluster "$PG_MAJOR" "$REPLICA_CLUSTER" stop
            else "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m fast stop >/dev/null; fi
        else
            info "the replica is not running"
        fi
        ;;
    status)
        if replica_running; then
            PGPASSWORD="$KIT_PASSWORD" psql -XAtq -h 127.0.0.1 -p "$REPLICA_PORT" -U "$KIT_USER" -d "$KIT_DB" -F ' ' -c \
                "SELECT 'running on port $REPLICA_PORT, in recovery: ' || pg_is_in_recovery()
                        || ', receiver: ' || coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')
                        || ', replayed up to ' || coalesce(pg_last_wal_replay_lsn()::text, '?')" || true
        else
            echo "stopped"
            exit 1
        fi
        ;;
    destroy)
        step "Removing the replica '$REPLICA_CLUSTER', its slot and its replication role (the primary's data is untouched)"
        if (( AS_ROOT )) && pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}' | grep -qx "$PG_MAJOR/$REPLICA_CLUSTER"; then
            pg_dropcluster --stop "$PG_MAJOR" "$REPLICA_CLUSTER"
        elif replica_running; then
            as_owner "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m fast stop >/dev/null
        fi
        as_owner rm -rf "$DATA_DIR"
        (( AS_ROOT )) && rm -rf "$CONF_DIR" "$LOG"
        if primary_up; then
            # Without this, the primary would keep every WAL segment for a replica that no longer exists.
            superuser_psql -c "SELECT pg_drop_replication_slot('$SLOT') FROM pg_replication_slots WHERE slot_name = '$SLOT'" >/dev/null
            superuser_psql -c "DROP ROLE IF EXISTS \"$REPLICATION_ROLE\"" >/dev/null
        else
            info "the primary is down: drop slot '$SLOT' and role '$REPLICATION_ROLE' on it later (make replica-destroy again)"
        fi
        ;;
    *) echo "usage: $0 up|stop|status|exists|destroy" >&2; exit 2 ;;
esac
