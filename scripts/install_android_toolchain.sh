#!/usr/bin/env bash
# Install the hand-rolled Android build toolchain used by android_demo/build_apk.sh and tests/test_android_demo.py:
#   bookworm: aapt (v1: Debian bookworm has no aapt2 package), dexdump, apksigner, zipalign, a JDK (javac/keytool), junit4
#   bullseye (pinned low, only these two packages): dalvik-exchange (dx) and libandroid-23-java (API 23 android.jar)
# Idempotent and quiet; fast (no apt-get update) when everything is already installed. Needs root (or sudo).
set -euo pipefail

BOOKWORM_PKGS=(aapt apksigner zipalign dexdump default-jdk-headless junit4)
BULLSEYE_PKGS=(dalvik-exchange libandroid-23-java)
ANDROID_JAR=/usr/lib/android-sdk/platforms/android-23/android.jar

have_all() {
    command -v aapt >/dev/null && command -v dexdump >/dev/null && command -v apksigner >/dev/null \
        && command -v zipalign >/dev/null && command -v javac >/dev/null && command -v keytool >/dev/null \
        && command -v dalvik-exchange >/dev/null && [ -f "$ANDROID_JAR" ] && [ -f /usr/share/java/junit4.jar ]
}

if have_all; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; else
        echo "install_android_toolchain.sh: needs root (or sudo) to apt-get install" >&2; exit 1; fi
fi

export DEBIAN_FRONTEND=noninteractive
# bullseye for dx + android.jar only: a separate sources file and a low pin so nothing else comes from it
if [ ! -f /etc/apt/sources.list.d/edge-boneage-bullseye.sources ]; then
    $SUDO tee /etc/apt/sources.list.d/edge-boneage-bullseye.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
if [ ! -f /etc/apt/preferences.d/edge-boneage-bullseye.pref ]; then
    $SUDO tee /etc/apt/preferences.d/edge-boneage-bullseye.pref >/dev/null <<'PREF'
Package: *
Pin: release n=bullseye
Pin-Priority: 100
PREF
fi

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
run() {  # quiet unless it fails: then show apt's output
    if ! "$@" >"$LOG" 2>&1; then cat "$LOG" >&2; echo "install_android_toolchain.sh: failed: $*" >&2; exit 1; fi
}
run $SUDO apt-get update -qq
run $SUDO apt-get install -y -qq --no-install-recommends "${BOOKWORM_PKGS[@]}"
run $SUDO apt-get install -y -qq --no-install-recommends -t bullseye "${BULLSEYE_PKGS[@]}"

if ! have_all; then
    echo "install_android_toolchain.sh: install finished but a tool is still missing" \
         "(aapt/dexdump/apksigner/zipalign/javac/keytool/dalvik-exchange/$ANDROID_JAR/junit4.jar)" >&2
    exit 1
fi
