#!/usr/bin/env bash
# Start JupyterLab on notebooks/ with the pg-ml-kit kernel, and print the URL to open.
# (Docker users: `docker compose -f docker/docker-compose.yml up lab` runs the same thing in a container.)
set -euo pipefail
source "$(dirname "$0")/common.sh"
VENV="$KIT_ROOT/.venv"

if port_in_use "$KIT_LAB_PORT"; then
    fail "Port $KIT_LAB_PORT (JupyterLab) is already taken — perhaps a JupyterLab from an earlier \`make lab\` is still running." \
         "Open http://127.0.0.1:$KIT_LAB_PORT/lab if it is yours, stop it, or choose another port: KIT_LAB_PORT=8900 make lab"
fi
mkdir -p "$KIT_ROOT/.kit"
token_file="$KIT_ROOT/.kit/lab-token"
[[ -s "$token_file" ]] || python3 -c 'import secrets; print(secrets.token_hex(16))' > "$token_file"
token=$(cat "$token_file")
url="http://127.0.0.1:$KIT_LAB_PORT/lab?token=$token"
step "Starting JupyterLab on notebooks/ (Ctrl-C stops it)"
printf '\n    Open this URL in your browser:\n\n        \033[1m%s\033[0m\n\n    Start with 00_setup_check.ipynb. Database: %s\n\n' "$url" "${DATABASE_URL:-$KIT_URL}" >&2
cd "$KIT_ROOT/notebooks"
extra=()
(( EUID == 0 )) && extra+=(--allow-root)   # Jupyter refuses root unless told; containers and CI run as root
exec "$VENV/bin/jupyter" lab "${extra[@]}" --no-browser --ip=127.0.0.1 --port="$KIT_LAB_PORT" \
    --IdentityProvider.token="$token" --ServerApp.root_dir="$KIT_ROOT/notebooks" \
    --MappingKernelManager.default_kernel_name=pg-ml-kit
