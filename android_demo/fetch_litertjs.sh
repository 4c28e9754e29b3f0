#!/usr/bin/env bash
# Vendor the LiteRT.js runtime (npm @litertjs/core + @litertjs/wasm-utils, Apache-2.0) into web/vendor/litertjs/.
#
# Not committed: the WebAssembly runtime is ~9.4 MB per variant and we ship two (relaxed-SIMD and the
# "compat" build for browsers/WebViews without relaxed SIMD), ~19 MB in all. build_apk.sh, bench_wasm.py and
# tests/test_android_demo.py call this script; it only needs the npm registry (npm pack), pins the version and
# checks the tarballs' SHA-256, and returns at once when the vendored copy is already there.
set -euo pipefail

VERSION=2.5.3
CORE_SHA256=a97660833e9e7e1063c95e12016718881240b14f7438728a2f62785e912d30fd
UTILS_SHA256=ce2a1f8379c067be49e59752e5a7f40db6be09f6e497f0f11e59f17b515366a7

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="$HERE/web/vendor/litertjs"
STAMP="$DEST/VERSION"
FILES=(core/index.js wasm-utils/index.js
       wasm/litert_wasm_internal.js wasm/litert_wasm_internal.wasm
       wasm/litert_wasm_compat_internal.js wasm/litert_wasm_compat_internal.wasm
       LICENSE-NOTE.txt)

complete() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$VERSION" ] || return 1
    for f in "${FILES[@]}"; do [ -s "$DEST/$f" ] || return 1; done
}
if complete; then exit 0; fi

command -v npm >/dev/null || { echo "fetch_litertjs.sh: npm is not installed (apt-get install npm)" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "@litertjs/core@$VERSION" "@litertjs/wasm-utils@$VERSION" >/dev/null 2>"$TMP/npm.log") \
    || { cat "$TMP/npm.log" >&2; echo "fetch_litertjs.sh: npm pack @litertjs/core@$VERSION failed" >&2; exit 1; }
check() {
    local got; got="$(sha256sum "$1" | cut -d' ' -f1)"
    [ "$got" = "$2" ] || { echo "fetch_litertjs.sh: $1: sha256 $got, expected $2" >&2; exit 1; }
}
check "$TMP/litertjs-core-$VERSION.tgz" "$CORE_SHA256"
check "$TMP/litertjs-wasm-utils-$VERSION.tgz" "$UTILS_SHA256"
mkdir -p "$TMP/core" "$TMP/utils"
tar xzf "$TMP/litertjs-core-$VERSION.tgz" -C "$TMP/core"
tar xzf "$TMP/litertjs-wasm-utils-$VERSION.tgz" -C "$TMP/utils"

NEW="$DEST.new.$$"
rm -rf "$NEW"; mkdir -p "$NEW/core" "$NEW/wasm-utils" "$NEW/wasm"
cp "$TMP/core/package/dist/index.js" "$NEW/core/index.js"
cp "$TMP/utils/package/dist/index.js" "$NEW/wasm-utils/index.js"
for v in litert_wasm_internal litert_wasm_compat_internal; do
    cp "$TMP/core/package/wasm/$v.js" "$TMP/core/package/wasm/$v.wasm" "$NEW/wasm/"
done
# the sourceMappingURL comments point at maps we do not ship
sed -i '/^\/\/# sourceMappingURL=/d' "$NEW/core/index.js" "$NEW/wasm-utils/index.js"
chmod -R a+rX,go-w "$NEW"
cat > "$NEW/LICENSE-NOTE.txt" <<NOTE
@litertjs/core $VERSION and @litertjs/wasm-utils $VERSION from the npm registry (sha256 of the tarballs:
$CORE_SHA256, $UTILS_SHA256). Apache License 2.0, Copyright Google LLC; https://github.com/google-ai-edge/LiteRT
(litert/js/packages/core, litert/js/packages/wasm_utils). Fetched by android_demo/fetch_litertjs.sh.
NOTE
echo "$VERSION" > "$NEW/VERSION"
rm -rf "$DEST"; mv "$NEW" "$DEST"
complete || { echo "fetch_litertjs.sh: vendored copy incomplete in $DEST" >&2; exit 1; }
