#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and its WebDriver (chromium-driver: /usr/bin/chromedriver), which
# tests/test_android_demo.py, android_demo/bench_wasm.py and android_demo/screenshot.py drive through Selenium.
# Idempotent and quiet; returns at once when both are installed (installs only what is missing). Needs root (or sudo).
set -euo pipefail

PKGS=()
command -v chromium >/dev/null || PKGS+=(chromium fonts-dejavu-core)
command -v chromedriver >/dev/null || PKGS+=(chromium-driver)
if [ ${#PKGS[@]} = 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "install_chromium.sh: needs root (or sudo) to apt-get install ${PKGS[*]}" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
run() {  # quiet unless it fails: then show apt's output
    if ! "$@" >"$LOG" 2>&1; then cat "$LOG" >&2; echo "install_chromium.sh: failed: $*" >&2; exit 1; fi
}
run $SUDO apt-get update -qq
run $SUDO apt-get install -y -qq --no-install-recommends "${PKGS[@]}"
for tool in chromium chromedriver; do
    command -v "$tool" >/dev/null || { echo "install_chromium.sh: $tool still missing after install" >&2; exit 1; }
done
