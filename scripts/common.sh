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

# sha256 of the given files together: a stamp that says "installed from exactly these pins".
pins_stamp() { cat "$@" | sha256sum | cut -d' ' -f1; }
