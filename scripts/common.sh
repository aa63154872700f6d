# Shared by the scripts in this folder: load kit.env (environment variables win),
# and small helpers for messages. Sourced, not executed.
KIT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
while IFS='=' read -r key value; do
    [[ -z "$key" || "$key" == \#* ]] && continue
    # An exported variable of the same name overrides kit.env (e.g. KIT_PORT=5599 make db).
    if [[ -z "${!key:-}" ]]; then export "$key=$value"; fi
done < "$KIT_ROOT/kit.env"

KIT_URL="postgresql://${KIT_USER}:${KIT_PASSWORD}@localhost:${KIT_PORT}/${KIT_DB}"

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
# fail CAUSE FIX: one message naming the cause and the fix, then exit.
fail() {
    printf '\n\033[31m[FAIL]\033[0m %s\n       Fix: %s\n\n' "$1" "$2" >&2
    exit 1
}

# Is something listening on TCP localhost:$1?
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# drop_database NAME: drop one of the kit's side databases (a test lane's, the bench's, the browser test's),
# sessions and all; quiet, and never an error (it runs from EXIT traps, where the server may be gone).
drop_database() {
    PGOPTIONS='-c client_min_messages=warning' psql "$(KIT_DB=postgres "$KIT_ROOT/scripts/db.sh" url)" -XAtq \
        -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 || true
}

# kit_python: the system python$PYTHON_MINOR (on Debian the very Python that PL/Python embeds), or "".
kit_python() { command -v "/usr/bin/python$PYTHON_MINOR" || command -v "python$PYTHON_MINOR" || true; }

# sha256 of the given files together: a stamp that says "installed from exactly these pins".
pins_stamp() { cat "$@" | sha256sum | cut -d' ' -f1; }

# run_locked NAME SCRIPT ARGS...: run SCRIPT ARGS again while holding the kit's lock NAME, and exit
# with its status (a script calls this first, with "$0" "$@"; inside, the lock is already held).
# flock -o keeps the lock in flock itself: the script, and any server it starts, never inherit it.
run_locked() {
    local name="$1" dir="$KIT_ROOT/.kit" status=0; shift
    [[ ":${KIT_LOCKS_HELD:-}:" == *":$name:"* ]] && return 0
    (( EUID == 0 )) && dir=/run/lock
    mkdir -p "$dir"
    KIT_LOCKS_HELD="${KIT_LOCKS_HELD:-}:$name" flock -o -E 75 -w 900 "$dir/pg-ml-kit-$name.lock" "$@" || status=$?
    if (( status == 75 )); then
        fail "Another kit script has held the lock '$name' for 15 minutes." \
             "Wait for it to finish, or stop it (fuser -v $dir/pg-ml-kit-$name.lock 2>/dev/null names its process)."
    fi
    exit "$status"
}
