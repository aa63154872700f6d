#!/usr/bin/env bash
# What the browser test needs on top of `make venv`: Debian's chromium (apt-get, once) and the pinned
# Playwright for Python (requirements/browser.txt) in .venv. Playwright's own browser download is never
# used: the test launches the system chromium, which the distribution keeps patched.
# Prints the chromium binary's path as its last line.
set -euo pipefail
source "$(dirname "$0")/common.sh"
VENV="$KIT_ROOT/.venv"
CHROMIUM="${KIT_CHROMIUM:-/usr/bin/chromium}"

# Debian's chromium, and an emoji font: the exercise checks print ✅/❌, which an attendee's browser shows.
missing=()
[[ -x "$CHROMIUM" ]] || missing+=(chromium)
if command -v dpkg-query >/dev/null; then
    for package in fonts-dejavu-core fonts-noto-color-emoji; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
    done
fi
if (( ${#missing[@]} )); then
    [[ -f /etc/debian_version ]] && command -v apt-get >/dev/null \
        || fail "The browser test needs chromium, and this is not Debian/Ubuntu, so the kit cannot install it." \
                "Install Chromium and run again with KIT_CHROMIUM=/path/to/chromium make test-browser"
    sudo=""
    (( EUID == 0 )) || sudo="sudo"
    step "Installing ${missing[*]} for the browser test with apt-get (a minute or two, once)"
    $sudo apt-get update -q >&2 || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
        || fail "apt-get could not install ${missing[*]}." "Install them yourself, or point KIT_CHROMIUM at a Chromium binary."
fi

stamp=$(pins_stamp "$KIT_ROOT/requirements/browser.txt")
if [[ ! -f "$VENV/.kit-browser-pins" || "$(cat "$VENV/.kit-browser-pins")" != "$stamp" ]]; then
    step "Installing Playwright for Python into .venv (requirements/browser.txt)"
    "$VENV/bin/pip" install --quiet --progress-bar off --no-input -r "$KIT_ROOT/requirements/browser.txt" 2>&1 \
        | { grep -v 'is ignored: it is neither' || true; } >&2
    "$VENV/bin/python" -c 'import playwright' \
        || fail "pip could not install requirements/browser.txt." "Check access to PyPI and run the command again."
    echo "$stamp" > "$VENV/.kit-browser-pins"
fi
info "browser: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM"), Playwright $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("playwright"))')"
echo "$CHROMIUM"
