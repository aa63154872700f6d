#!/usr/bin/env bash
# The pytest suite in two lanes at once (2 cores), each in a new random order (pytest-randomly; the
# seed is printed, RANDOMLY_SEED=N repeats it), each on a database of its own:
#   cluster lane  the kit's own database: the modules that need what exists once per cluster — pg_cron's
#                 database (sql/07), roles (sql/01's demo role, sql/09's least-privilege roles), the read
#                 replica, provisioning and JupyterLab;
#   second lane   every other module, on <KIT_DB>_tests, made fresh for the run and dropped after it.
# Every module creates what it uses, so which lane it runs in changes nothing but the time.
# Usage: scripts/test_modules.sh [pytest options]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$KIT_ROOT"
PY=.venv/bin/python
mkdir -p build

CLUSTER_LANE=(tests/test_sql_01_plpython_basics.py tests/test_sql_07_retraining.py tests/test_sql_09_bad_input.py
              tests/test_sql_09_concurrency.py tests/test_sql_09_security.py tests/test_replica.py
              tests/test_provisioning.py tests/test_setup_check.py tests/test_lab.py)
second_lane=()
for module in tests/test_*.py; do
    [[ " ${CLUSTER_LANE[*]} " == *" $module "* ]] || second_lane+=("$module")
done
seed="${RANDOMLY_SEED:-$(( RANDOM * 32768 + RANDOM ))}"
second_db="${KIT_DB}_tests"

KIT_DB="$second_db" KIT_RESET_WITHOUT_RESTART=1 scripts/db.sh reset >/dev/null 2>&1 \
    || fail "could not create the second test database $second_db" "make db-reset shows why"
trap 'drop_database "$second_db"' EXIT

step "pytest in two lanes, random order (RANDOMLY_SEED=$seed repeats it): $KIT_DB and $second_db"
PYTEST=("$PY" -m pytest -m "not notebook_run" -p randomly "--randomly-seed=$seed" --durations=5 "$@")
"${PYTEST[@]}" "${CLUSTER_LANE[@]}" > build/pytest-cluster-lane.log 2>&1 &
cluster_pid=$!
KIT_DB="$second_db" "${PYTEST[@]}" "${second_lane[@]}" > build/pytest-second-lane.log 2>&1 &
second_pid=$!
status=0
wait "$cluster_pid" || status=1
wait "$second_pid" || status=1

passed=0 failed=0
for lane in cluster second; do
    log="build/pytest-$lane-lane.log"
    echo "---- $lane lane (build/pytest-$lane-lane.log)"
    # On failure the whole report; on success its durations and summary.
    if grep -qE '^(FAILED|ERROR) ' "$log" || ! tail -1 "$log" | grep -q ' passed'; then cat "$log"; else sed -n '/slowest/,$p' "$log"; fi
    summary=$(tail -1 "$log")
    # awk alone (no grep): a lane with nothing failed must not end the script under set -e/pipefail.
    passed=$(( passed + $(awk '{for (i = 2; i <= NF; i++) if ($i ~ /^passed/) s += $(i-1)} END {print s + 0}' <<<"$summary") ))
    failed=$(( failed + $(awk '{for (i = 2; i <= NF; i++) if ($i ~ /^(failed|errors?)/) s += $(i-1)} END {print s + 0}' <<<"$summary") ))
done
echo
echo "pytest: $passed passed, $failed failed"
exit "$status"
