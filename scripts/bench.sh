#!/usr/bin/env bash
# `make bench`: the benchmark in a database of its own (KIT_BENCH_DB, default <KIT_DB>_bench), made
# fresh for the run and dropped after it, so the attendee's data, models and hardening stay as they were.
# Usage: scripts/bench.sh [python -m pgmlkit.bench options]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$KIT_ROOT"
bench_db="${KIT_BENCH_DB:-${KIT_DB}_bench}"
[[ "$bench_db" != "$KIT_DB" ]] || fail "KIT_BENCH_DB is the workshop database $KIT_DB; the benchmark would replace its rows and models." \
    "Unset KIT_BENCH_DB (default ${KIT_DB}_bench) or name another database."
step "Benchmark database $bench_db: created fresh, dropped afterwards (the workshop database $KIT_DB is not touched)"
KIT_DB="$bench_db" KIT_RESET_WITHOUT_RESTART=1 scripts/db.sh reset >/dev/null
trap 'drop_database "$bench_db"' EXIT
KIT_DB="$bench_db" .venv/bin/python -m pgmlkit.bench "$@"
