#!/usr/bin/env bash
# make test-browser: the attendee's path in a real browser (tests/browser/), on a database of its own
# (<KIT_DB>_browser, reset first and dropped after), so it leans on no rows another test or notebook left.
# Screenshots of every step: build/e2e/. Usage: scripts/test_browser.sh [pytest options]
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$KIT_ROOT"
mkdir -p build
chromium=$(scripts/browser_env.sh | tail -1)
browser_db="${KIT_DB}_browser"

KIT_DB="$browser_db" KIT_RESET_WITHOUT_RESTART=1 scripts/db.sh reset > build/browser-reset.log 2>&1 \
    || { tail -20 build/browser-reset.log >&2; fail "could not create the browser test's database $browser_db" "make db-reset shows why"; }
trap 'drop_database "$browser_db"' EXIT
rm -rf build/e2e
step "The attendee's path in chromium (JupyterLab on $browser_db, slides, web pages); screenshots in build/e2e/"
KIT_DB="$browser_db" KIT_CHROMIUM="$chromium" .venv/bin/python -m pytest tests/browser -p no:randomly -p no:cacheprovider \
    -q --durations=10 "$@"
