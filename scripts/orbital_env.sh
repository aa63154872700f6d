#!/usr/bin/env bash
# `make bench`'s peer compiler: orbital (requirements/orbital.txt) in an environment of its own,
# build/orbital-venv, with the Python the kernel uses. Never the server's or the kernel's environment:
# the kit's own pins stay exactly what PL/Python runs. Prints the environment's python as its last line.
set -euo pipefail
source "$(dirname "$0")/common.sh"
VENV="$KIT_ROOT/build/orbital-venv"
python_bin="$(kit_python)"
[[ -n "$python_bin" ]] || fail "python$PYTHON_MINOR is not on PATH, so the bench cannot build its orbital environment." \
    "Install Python $PYTHON_MINOR (Debian/Ubuntu: sudo apt-get install python$PYTHON_MINOR-venv)."

stamp=$(pins_stamp "$KIT_ROOT/requirements/orbital.txt" "$KIT_ROOT/requirements/server.txt")
if [[ ! -f "$VENV/.kit-pins" || "$(cat "$VENV/.kit-pins")" != "$stamp" ]]; then
    step "Building the bench's orbital environment build/orbital-venv (requirements/orbital.txt, once)"
    rm -rf "$VENV"
    "$python_bin" -m venv "$VENV" || fail "Could not create $VENV with $python_bin." "Debian/Ubuntu: sudo apt-get install python$PYTHON_MINOR-venv"
    "$VENV/bin/pip" install --quiet --progress-bar off --no-input -r "$KIT_ROOT/requirements/orbital.txt" 2>&1 \
        | { grep -v 'is ignored: it is neither' || true; } >&2
    "$VENV/bin/python" -c 'import orbital' \
        || fail "pip could not install requirements/orbital.txt." "Check access to PyPI and run the command again."
    echo "$stamp" > "$VENV/.kit-pins"
fi
echo "$VENV/bin/python"
