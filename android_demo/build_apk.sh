#!/usr/bin/env bash
# Build a signed debug APK of the demo by hand (no Gradle, no Google Maven):
#   aapt package (resources + assets) -> javac -source/-target 8 against the API 23 android.jar -> dx -> aapt add
#   -> zipalign -> apksigner (debug keystore made with keytool at build time, kept in build/, never committed).
# Usage: android_demo/build_apk.sh [--model MODEL.tflite] [--out APK]
#   --model: bundled as assets/web/models/default.tflite (loaded at start-up); default: the packaged RSNA-trained
#            model edge_boneage/pretrained/boneage_age.tflite (see its MODEL_CARD.md); --model none bundles none
#            and the app asks for a .tflite file. Toolchain: bash scripts/install_android_toolchain.sh. Runtime: fetch_litertjs.sh (npm).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="$HERE/../edge_boneage/pretrained/boneage_age.tflite"
OUT="$HERE/build/edge-boneage-demo-debug.apk"
while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n 2,8p "$0"; exit 0 ;;
        *) echo "build_apk.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
ANDROID_JAR="${ANDROID_JAR:-/usr/lib/android-sdk/platforms/android-23/android.jar}"
for tool in aapt javac keytool dalvik-exchange zipalign apksigner; do
    command -v "$tool" >/dev/null || { echo "build_apk.sh: $tool not found (bash scripts/install_android_toolchain.sh)" >&2; exit 1; }
done
[ -f "$ANDROID_JAR" ] || { echo "build_apk.sh: $ANDROID_JAR missing (bash scripts/install_android_toolchain.sh)" >&2; exit 1; }
if [ "$MODEL" = none ]; then MODEL=""; fi
if [ -n "$MODEL" ] && [ ! -f "$MODEL" ]; then echo "build_apk.sh: $MODEL: no such model file" >&2; exit 1; fi

bash "$HERE/fetch_litertjs.sh"

B="$HERE/build/apk"
rm -rf "$B"; mkdir -p "$B/assets/web" "$B/gen" "$B/classes" "$B/dex"
SRC="$HERE/app/src/main"
cp "$HERE/web/index.html" "$HERE/web/"*.js "$B/assets/web/"  # app, boneage, decode, quality (+ constants)
mkdir -p "$B/assets/web/vendor"
cp -r "$HERE/web/vendor/litertjs" "$B/assets/web/vendor/"
if [ -n "$MODEL" ]; then mkdir -p "$B/assets/web/models"; cp "$MODEL" "$B/assets/web/models/default.tflite"; fi

# 1. resources + manifest + assets (Debian bookworm ships aapt, not aapt2); R.java for the sources
aapt package -f -m -J "$B/gen" -M "$SRC/AndroidManifest.xml" -S "$SRC/res" -A "$B/assets" -I "$ANDROID_JAR" \
    --min-sdk-version 23 --target-sdk-version 23 -F "$B/unsigned.apk" >/dev/null
# 2. Java 8 bytecode (dx rejects newer class files); anonymous/inner classes only, no lambdas
find "$SRC/java" "$B/gen" -name '*.java' > "$B/sources.txt"
javac -nowarn -Xlint:-options -source 8 -target 8 -encoding UTF-8 -bootclasspath "$ANDROID_JAR" -classpath "$ANDROID_JAR" \
    -d "$B/classes" @"$B/sources.txt"
# 3. dex
dalvik-exchange --dex --min-sdk-version=23 --output="$B/dex/classes.dex" "$B/classes"
(cd "$B/dex" && aapt add "$B/unsigned.apk" classes.dex >/dev/null)
# 4. align, then sign with a throw-away debug key
zipalign -f -p 4 "$B/unsigned.apk" "$B/aligned.apk"
KS="$HERE/build/debug.keystore"
if [ ! -f "$KS" ]; then
    keytool -genkeypair -keystore "$KS" -storepass android -keypass android -alias androiddebugkey \
        -keyalg RSA -keysize 2048 -validity 10000 -dname "CN=Android Debug,O=Android,C=US" >/dev/null 2>&1
fi
mkdir -p "$(dirname "$OUT")"
apksigner sign --ks "$KS" --ks-pass pass:android --key-pass pass:android --ks-key-alias androiddebugkey \
    --min-sdk-version 23 --out "$OUT" "$B/aligned.apk"
apksigner verify --min-sdk-version 23 "$OUT"
echo "$OUT ($(stat -c %s "$OUT") bytes)"
