#!/bin/sh
# pg-ml-kit: start JupyterLab in the lab container on notebooks/ and print the URL to open on the
# host (KIT_LAB_PORT is the host's port; the container listens on 8888). The token is the one
# `make lab` uses (.kit/lab-token), so one bookmark serves both ways of running the kit.
set -eu
token="${KIT_LAB_TOKEN:-}"
if [ -z "$token" ]; then
    token_file=/kit/.kit/lab-token
    if ! { [ -s "$token_file" ] || { mkdir -p /kit/.kit && python -c 'import secrets; print(secrets.token_hex(16))' > "$token_file"; }; } 2>/dev/null; then
        token_file="$HOME/lab-token"   # the repository is read-only for this user: keep it in the container
        [ -s "$token_file" ] || python -c 'import secrets; print(secrets.token_hex(16))' > "$token_file"
    fi
    token=$(cat "$token_file")
fi
printf '\n    Open this URL in your browser:\n\n        http://127.0.0.1:%s/lab?token=%s\n\n    Start with 00_setup_check.ipynb. Database: %s\n\n' \
    "${KIT_LAB_PORT:-8899}" "$token" "${DATABASE_URL}"
# Root in the container when you are root on the host (KIT_UID=0): Jupyter needs to be told.
if [ "$(id -u)" = 0 ]; then set -- --allow-root; else set --; fi
exec jupyter lab --no-browser --ip=0.0.0.0 --port=8888 \
    --IdentityProvider.token="$token" --ServerApp.root_dir=/kit/notebooks \
    --MappingKernelManager.default_kernel_name=pg-ml-kit \
    --ServerApp.custom_display_url="http://127.0.0.1:${KIT_LAB_PORT:-8899}/lab" "$@"
