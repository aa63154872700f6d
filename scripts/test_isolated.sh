#!/usr/bin/env bash
# Each test module alone, on a freshly reset workshop database: the proof that no module leans on
# rows, functions or models that another one (or an earlier run) left behind.
# Usage: scripts/test_isolated.sh [tests/test_x.py ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$KIT_ROOT"
PY=.venv/bin/python
mkdir -p build/isolated

modules=("$@")
(( ${#modules[@]} )) || modules=(tests/test_*.py)
failed=()
for module in "${modules[@]}"; do
    name=$(basename "$module" .py)
    scripts/db.sh reset >/dev/null 2>&1 || fail "could not reset the workshop database before $module" "make db-reset shows why"
    if "$PY" -m pytest -q -p no:cacheprovider "$module" > "build/isolated/$name.log" 2>&1; then
        info "$name: $(tail -1 "build/isolated/$name.log")"
    else
        tail -30 "build/isolated/$name.log" >&2
        failed+=("$name")
    fi
done
echo
echo "isolated: $(( ${#modules[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
if (( ${#failed[@]} )); then printf '  failed: %s\n' "${failed[@]}"; exit 1; fi
