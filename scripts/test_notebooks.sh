#!/usr/bin/env bash
# Every notebook, under nbval (stored outputs checked), the way attendees use them:
#   1. alone, on a freshly reset workshop database ("stands alone"),
#   2. a second time on the same database ("idempotent") — with every exercise's solution filled in
#      (tools/with_solutions.py) and PGMLKIT_EXERCISES_STRICT=1, so each solution must pass its check too;
#      only the answer and check cells' outputs are not compared. One run proves both.
# Two lanes run at once, each on a database of its own in the kit's cluster, so the two cores are
# both busy. Notebooks that need the cluster to themselves (pg_cron's scheduler lives in the kit's
# own database, and its reset restarts the server) run first, alone.
# Usage: scripts/test_notebooks.sh [notebooks/NN_*.ipynb ...]   (named notebooks: one lane, in order)
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$KIT_ROOT"
PY=.venv/bin/python
mkdir -p build
NBVAL=(--nbval --nbval-kernel-name pg-ml-kit --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider -p no:randomly -q)

ALONE=(notebooks/07_retraining.ipynb)                 # pg_cron: its database must be reset with a restart
# Lane 1 uses the kit's own database (notebook 00 shows its name). Lane 2 gets its own. Notebooks
# that create cluster-wide roles (01's demo role, 09's least-privilege roles) share a lane, so no two
# runs create or drop the same role at once. Balanced by measured run time.
LANE1=(notebooks/00_setup_check.ipynb notebooks/01_plpython_basics.ipynb notebooks/09_production_checklist.ipynb
       notebooks/04_training.ipynb notebooks/06_triggers.ipynb notebooks/02_sample_data.ipynb notebooks/03_serialisation.ipynb)
LANE2=(notebooks/08_tradeoffs.ipynb notebooks/05_prediction.ipynb notebooks/10_compiled_and_replicas.ipynb)

# run_notebook NOTEBOOK: reset, fresh, again (with the solutions). One line per run; non-zero on a failure.
run_notebook() {
    local notebook="$1" name status=0 log second run
    name=$(basename "$notebook" .ipynb)
    if ! scripts/db.sh reset >"build/nbval-$name-reset.log" 2>&1; then
        tail -20 "build/nbval-$name-reset.log" >&2
        echo "  FAIL $name (reset of $KIT_DB)"; return 1
    fi
    log="build/nbval-$name-fresh.log"
    if "$PY" -m pytest "${NBVAL[@]}" "$notebook" >"$log" 2>&1; then
        echo "  PASS $name fresh [$KIT_DB]: $(tail -1 "$log")"
    else
        tail -40 "$log" >&2; echo "  FAIL $name (fresh): $log"; status=1
    fi
    second="$notebook" run="again"
    if grep -q '"exercise-answer"' "$notebook"; then
        second="build/with-solutions/$name.ipynb" run="again, with solutions"
        "$PY" tools/with_solutions.py "$notebook" "$second"
    fi
    log="build/nbval-$name-again.log"
    if PGMLKIT_EXERCISES_STRICT=1 "$PY" -m pytest "${NBVAL[@]}" "$second" >"$log" 2>&1; then
        echo "  PASS $name $run [$KIT_DB]: $(tail -1 "$log")"
    else
        tail -40 "$log" >&2; echo "  FAIL $name ($run): $log"; status=1
    fi
    return "$status"
}

# run_lane DATABASE NOTEBOOK...: the notebooks in order, on one database; one log line per run.
run_lane() {
    local database="$1" notebook status=0; shift
    for notebook in "$@"; do
        KIT_DB="$database" KIT_RESET_WITHOUT_RESTART="${LANE_NO_RESTART:-0}" run_notebook "$notebook" || status=1
    done
    return "$status"
}

results="build/notebooks-results.log"
: > "$results"
started=$SECONDS
if (( $# )); then
    step "$# notebook(s), each on a fresh database, then again with its solutions"
    run_lane "$KIT_DB" "$@" | tee -a "$results" || true
    count=$#
else
    step "${ALONE[*]##*/}: alone (fresh database, then again with its solutions)"
    run_lane "$KIT_DB" "${ALONE[@]}" | tee -a "$results" || true
    step "the other notebooks in two lanes at once: $KIT_DB and ${KIT_DB}_lane2"
    LANE_NO_RESTART=1 run_lane "$KIT_DB" "${LANE1[@]}" > build/notebooks-lane1.log 2>&1 &
    lane1=$!
    LANE_NO_RESTART=1 run_lane "${KIT_DB}_lane2" "${LANE2[@]}" > build/notebooks-lane2.log 2>&1 &
    lane2=$!
    wait "$lane1" || true
    wait "$lane2" || true
    cat build/notebooks-lane1.log build/notebooks-lane2.log | tee -a "$results"
    count=$(( ${#ALONE[@]} + ${#LANE1[@]} + ${#LANE2[@]} ))
    all=(notebooks/[0-9][0-9]_*.ipynb)
    (( count == ${#all[@]} )) || fail "scripts/test_notebooks.sh runs $count notebooks but notebooks/ has ${#all[@]}." \
        "Add the new notebook to ALONE, LANE1 or LANE2 in scripts/test_notebooks.sh."
    # The lane database is the run's own: leave nothing behind.
    drop_database "${KIT_DB}_lane2"
fi
passed=$(grep -c '^  PASS ' "$results" || true)
failed=$(grep -c '^  FAIL ' "$results" || true)
echo
echo "notebooks ($count: fresh, then again with solutions; $(( SECONDS - started )) s): $passed passed, $failed failed"
if (( failed )); then grep '^  FAIL ' "$results"; exit 1; fi
