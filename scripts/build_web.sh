#!/usr/bin/env bash
# Builds everything the browser page needs into web/dist/:
#   1. npm packages (onnxruntime-web) from web/package-lock.json;
#   2. rust/veil-wasm for wasm32-unknown-unknown (simd128, single-threaded,
#      opt-level 3), with Debian's rustc-web building the standard library
#      from source (-Zbuild-std): rustup's toolchain may lack that target;
#   3. web/dist: the page sources, veil_wasm.wasm, the project's CenterFace
#      model (python/veil/models/centerface.onnx, sha256-checked) and the
#      onnxruntime-web files it loads at run time. Nothing comes from a CDN.
# Usage: scripts/build_web.sh   (scripts/install_web_deps.sh first, once)
# Env: VEIL_WEB_SKIP_NPM=1 skips step 1 when web/node_modules is current.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dist=web/dist
ort_dir=web/node_modules/onnxruntime-web/dist

for tool in /usr/bin/cargo /usr/bin/rustc wasm-ld-16; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build_web: $tool missing: run scripts/install_web_deps.sh" >&2; exit 1; }
done

# 1. npm packages.
if [ "${VEIL_WEB_SKIP_NPM:-0}" != 1 ] || [ ! -d "$ort_dir" ]; then
  (cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

# 2. The wasm module. Its own target dir so it never fights the host build;
# /usr/bin/cargo explicitly, because rustup's cargo comes first on PATH.
# The profile settings go through the environment: the workspace's release
# profile (panic = "unwind" for the Python extension) must not change.
export CARGO_TARGET_DIR="$root/target/wasm"
RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-16 \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128" \
CARGO_PROFILE_RELEASE_PANIC=abort \
CARGO_PROFILE_RELEASE_OPT_LEVEL=3 \
  /usr/bin/cargo build --release --target wasm32-unknown-unknown \
    -Zbuild-std=std,panic_abort -p veil-wasm
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/veil_wasm.wasm"

# 3. Assemble web/dist.
model=python/veil/models/centerface.onnx
expected=$(sed -n 's/.*"sha256": *"\([0-9a-f]\{64\}\)".*/\1/p' python/veil/models/centerface.json | head -n 1)
actual=$(sha256sum "$model" | cut -d' ' -f1)
if [ "$expected" != "$actual" ]; then
  echo "build_web: $model has sha256 $actual, models/centerface.json says $expected" >&2
  exit 1
fi

rm -rf "$dist"
mkdir -p "$dist/models" "$dist/ort"
cp web/src/index.html web/src/style.css web/src/*.js web/src/*.d.ts "$dist/"
cp "$wasm" "$dist/veil_wasm.wasm"
cp "$model" "$dist/models/centerface.onnx"
# ort.wasm.min.mjs (CPU/wasm backend only) loads this pair at run time.
cp "$ort_dir/ort.wasm.min.mjs" "$ort_dir/ort-wasm-simd-threaded.mjs" "$ort_dir/ort-wasm-simd-threaded.wasm" "$dist/ort/"
ort_version=$(node -p "require('./web/node_modules/onnxruntime-web/package.json').version")
cat > "$dist/build.json" <<JSON
{
  "veil_wasm_bytes": $(stat -c %s "$dist/veil_wasm.wasm"),
  "model_sha256": "$actual",
  "onnxruntime_web": "$ort_version"
}
JSON
echo "build_web: built $dist ($(du -sh "$dist" | cut -f1))"
