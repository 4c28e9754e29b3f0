#!/usr/bin/env bash
# Install Debian's headless-capable Chromium (used by tests/test_android_demo.py and android_demo/bench_wasm.py).
# Idempotent and quiet; returns at once when chromium is already installed. Needs root (or sudo).
set -euo pipefail

if command -v chromium >/dev/null; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "install_chromium.sh: needs root (or sudo) to apt-get install chromium" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
run() {  # quiet unless it fails: then show apt's output
    if ! "$@" >"$LOG" 2>&1; then cat "$LOG" >&2; echo "install_chromium.sh: failed: $*" >&2; exit 1; fi
}
run $SUDO apt-get update -qq
run $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
command -v chromium >/dev/null || { echo "install_chromium.sh: chromium still missing after install" >&2; exit 1; }
