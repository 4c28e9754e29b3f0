#!/usr/bin/env bash
# Install Debian's OpenSSH server and client (used by tests/test_benchmark.py's loopback `--device ssh:` test:
# the test starts its own /usr/sbin/sshd on 127.0.0.1 with a temporary config, host key and client key; nothing
# here starts or enables a system sshd). Idempotent and quiet; returns at once when both are installed.
set -euo pipefail

if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null && command -v scp >/dev/null && command -v ssh-keygen >/dev/null; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "install_sshd.sh: needs root (or sudo) to apt-get install openssh-server" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
run() {  # quiet unless it fails: then show apt's output
    if ! "$@" >"$LOG" 2>&1; then cat "$LOG" >&2; echo "install_sshd.sh: failed: $*" >&2; exit 1; fi
}
run $SUDO apt-get update -qq
# policy-rc.d 101: the package's postinst must not start a system-wide sshd (no init system in containers anyway)
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null && $SUDO chmod +x "$POLICY" && CREATED_POLICY=1
fi
status=0
$SUDO apt-get install -y -qq --no-install-recommends openssh-server openssh-client >"$LOG" 2>&1 || status=$?
if [ "$CREATED_POLICY" = 1 ]; then $SUDO rm -f "$POLICY"; fi
if [ "$status" != 0 ]; then cat "$LOG" >&2; echo "install_sshd.sh: apt-get install openssh-server failed" >&2; exit 1; fi
[ -x /usr/sbin/sshd ] || { echo "install_sshd.sh: /usr/sbin/sshd still missing after install" >&2; exit 1; }
