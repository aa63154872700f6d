#!/usr/bin/env bash
# Every notebook, under nbval (stored outputs checked), the way attendees use them:
#   1. alone, on a freshly reset workshop database ("stands alone"),
#   2. a second time on the same database ("idempotent").
# (tests/test_exercises.py runs them once more, in order, with every solution filled in.)
# Usage: scripts/test_notebooks.sh [notebooks/NN_*.ipynb ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$KIT_ROOT"
PY=.venv/bin/python
mkdir -p build
NBVAL=(--nbval --nbval-kernel-name pg-ml-kit --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider -p no:randomly -q)

notebooks=("$@")
(( ${#notebooks[@]} )) || notebooks=(notebooks/[0-9][0-9]_*.ipynb)
failed=()
for notebook in "${notebooks[@]}"; do
    step "$(basename "$notebook"): fresh database, then a second run"
    scripts/db.sh reset >/dev/null 2>&1 || fail "could not reset the workshop database before $notebook" "make db-reset shows why"
    for run in fresh again; do
        if ! "$PY" -m pytest "${NBVAL[@]}" "$notebook" > "build/nbval-$(basename "$notebook" .ipynb)-$run.log" 2>&1; then
            tail -40 "build/nbval-$(basename "$notebook" .ipynb)-$run.log" >&2
            failed+=("$(basename "$notebook") ($run)")
        else
            info "$run: $(tail -1 "build/nbval-$(basename "$notebook" .ipynb)-$run.log")"
        fi
    done
done
total=$(( ${#notebooks[@]} * 2 ))
echo
echo "notebooks: $(( total - ${#failed[@]} )) passed, ${#failed[@]} failed"
if (( ${#failed[@]} )); then printf '  failed: %s\n' "${failed[@]}"; exit 1; fi
