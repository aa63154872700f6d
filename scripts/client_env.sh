#!/usr/bin/env bash
# The client environment: .venv with requirements/client.txt (which includes the server pins),
# the kit's helper package, and a Jupyter kernel "pg-ml-kit" registered inside .venv.
# A second run installs nothing when the pins have not changed.
set -euo pipefail
source "$(dirname "$0")/common.sh"
VENV="$KIT_ROOT/.venv"

# Prefer the system interpreter: on Debian it is the very Python that PL/Python embeds.
python_bin="$(kit_python)"
[[ -n "$python_bin" ]] || fail "python$PYTHON_MINOR is not on PATH; the notebook kernel must run the same Python minor as PL/Python in the server." \
    "Install Python $PYTHON_MINOR (Debian/Ubuntu: sudo apt-get install python$PYTHON_MINOR python$PYTHON_MINOR-venv; or use conda: conda env create -f environment.yml)."

# A workshop's JupyterLab should not phone home either, nor ask 30 attendees at once whether it may
# (the "official Jupyter news" prompt): scripts/lab-overrides.json, which the lab image copies too.
# Copied on every run: cheap, and older .venvs get it too.
lab_settings() { install -D -m 644 "$KIT_ROOT/scripts/lab-overrides.json" "$VENV/share/jupyter/lab/settings/overrides.json"; }

stamp=$(pins_stamp "$KIT_ROOT/requirements/client.txt" "$KIT_ROOT/requirements/server.txt" "$KIT_ROOT/setup.cfg")
if [[ -f "$VENV/.kit-pins" && "$(cat "$VENV/.kit-pins")" == "$stamp" ]]; then
    info "client environment matches requirements/client.txt (.venv)"
    lab_settings
    exit 0
fi
step "Creating the client environment .venv with $python_bin (a few minutes, once)"
[[ -x "$VENV/bin/python" ]] || "$python_bin" -m venv "$VENV" \
    || fail "Could not create .venv with $python_bin." "Debian/Ubuntu: sudo apt-get install python$PYTHON_MINOR-venv"
"$VENV/bin/pip" install --quiet --upgrade pip 2>/dev/null || true
if ! "$VENV/bin/pip" install --progress-bar off --no-input -r "$KIT_ROOT/requirements/client.txt" 2>&1 \
    | { grep -Ev 'is ignored: it is neither|^Requirement already|^Looking in|^  Using cached|^Processing|^Collecting|^  Downloading' || true; } | sed 's/^/    /' >&2
then
    fail "pip could not install requirements/client.txt." "Check access to PyPI and run the command again."
fi
"$VENV/bin/pip" install --quiet --no-deps -e "$KIT_ROOT" 2>&1 | grep -v 'is ignored' >&2 || true
step "Registering the Jupyter kernel 'pg-ml-kit' (Python $PYTHON_MINOR, same pins as the server)"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name pg-ml-kit --display-name "Python $PYTHON_MINOR (pg-ml-kit)" >/dev/null
# JupySQL reports usage to its vendor unless told not to; a workshop kernel should not phone home.
"$VENV/bin/python" - "$VENV/share/jupyter/kernels/pg-ml-kit/kernel.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["env"] = {"PLOOMBER_STATS_ENABLED": "false", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
json.dump(spec, open(sys.argv[1], "w"), indent=1)
PY
echo "$stamp" > "$VENV/.kit-pins"
lab_settings
