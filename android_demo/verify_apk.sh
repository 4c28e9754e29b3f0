#!/usr/bin/env bash
# Build the demo APK with the packaged model and print what verifies it: size, apksigner, aapt badging, largest
# entries, dex classes (the record behind BENCHMARKS.md section android_apk). Needs scripts/install_android_toolchain.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
A=android_demo/build/edge-boneage-demo-debug.apk
bash android_demo/build_apk.sh >/dev/null
echo "APK $A: $(stat -c %s $A) bytes; bundled model: edge_boneage/pretrained/boneage_age.tflite"
echo "--- apksigner verify --verbose"
apksigner verify --verbose $A
echo "--- aapt dump badging (first 8 lines)"
aapt dump badging $A | head -8
echo "--- largest entries (unzip -l)"
unzip -l $A | awk 'NR>3 && $1 ~ /^[0-9]+$/' | sort -k1 -n -r | head -6
echo "--- dexdump classes.dex: class descriptors"
T=$(mktemp -d); unzip -p $A classes.dex > $T/classes.dex; dexdump $T/classes.dex | grep "Class descriptor"; rm -rf $T
