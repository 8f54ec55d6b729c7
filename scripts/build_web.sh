#!/usr/bin/env bash
# Builds everything the browser page needs into web/dist/:
#   1. npm packages (onnxruntime-web) from web/package-lock.json;
#   2. rust/veil-wasm for wasm32-unknown-unknown (simd128, single-threaded,
#      opt-level 3), with Debian's rustc-web building the standard library
#      from source (-Zbuild-std): rustup's toolchain may lack that target;
#   3. web/dist: the page sources, veil_wasm.wasm, the project's CenterFace
#      model (python/veil/models/centerface.onnx, sha256-checked) and the
#      onnxruntime-web files it loads at run time. Nothing comes from a CDN.
#   4. a copy of web/dist in python/veil/_web, for the wheel.
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
cp web/src/index.html web/src/style.css web/src/*.js web/src/*.d.ts web/src/manifest.webmanifest "$dist/"
cp -r web/src/icons "$dist/"
cp "$wasm" "$dist/veil_wasm.wasm"
cp "$model" "$dist/models/centerface.onnx"
# ort.wasm.min.mjs (CPU/wasm backend only) loads this pair at run time.
cp "$ort_dir/ort.wasm.min.mjs" "$ort_dir/ort-wasm-simd-threaded.mjs" "$ort_dir/ort-wasm-simd-threaded.wasm" "$dist/ort/"
# HEIC/HEIF decoding (libheif-js, LGPL-3.0; its licence travels with it),
# loaded by the page only when such a photo is opened.
heif_dir=web/node_modules/libheif-js/libheif-wasm
mkdir -p "$dist/heif"
cp "$heif_dir/libheif-bundle.mjs" "$dist/heif/"
cp "$heif_dir/LICENSE" "$dist/heif/LICENSE.txt"
ort_version=$(node -p "require('./web/node_modules/onnxruntime-web/package.json').version")
heif_version=$(node -p "require('./web/node_modules/libheif-js/package.json').version")
cat > "$dist/build.json" <<JSON
{
  "veil_wasm_bytes": $(stat -c %s "$dist/veil_wasm.wasm"),
  "model_sha256": "$actual",
  "onnxruntime_web": "$ort_version",
  "libheif_js": "$heif_version"
}
JSON
# The offline cache (sw.js) must list every file the page loads, or a reload
# without the server breaks; and a listed file that is missing makes the
# service worker's install fail. Checked here, against the built page.
python3 - "$dist" <<'PY'
import pathlib, re, sys
dist = pathlib.Path(sys.argv[1])
listed = set(re.findall(r"'([^']+)'", re.search(r"const FILES = \[(.*?)\];", (dist / "sw.js").read_text(), re.S).group(1)))
missing = sorted(f for f in listed if f != "./" and not (dist / f).is_file())
loaded = {p.relative_to(dist).as_posix() for p in dist.rglob("*") if p.suffix in (".js", ".mjs", ".wasm", ".onnx", ".html", ".css")}
unlisted = sorted(loaded - listed - {"sw.js"})
if missing or unlisted:
    sys.exit(f"build_web: web/src/sw.js FILES is out of date: missing from dist {missing}, not cached {unlisted}")
PY
# Precompressed copies (X.gz beside X), which `veil web` sends to browsers
# that accept gzip; -n keeps file names and times out of them.
find "$dist" -type f \( -name '*.js' -o -name '*.mjs' -o -name '*.wasm' -o -name '*.onnx' -o -name '*.html' \
  -o -name '*.css' -o -name '*.json' -o -name '*.webmanifest' -o -name '*.ts' \) -size +1k -exec gzip -9 -k -n {} +
# Where gzip saves under a tenth (the model's weights), the plain file is sent.
find "$dist" -name '*.gz' | while read -r packed; do
  [ $(( $(stat -c %s "$packed") * 10 )) -lt $(( $(stat -c %s "${packed%.gz}") * 9 )) ] || rm "$packed"
done

# 4. The copy the Python package ships (veil/_web, git-ignored): a wheel
# built after this (`maturin build --release`) carries the page, and an
# installed `veil web` serves it (pyproject.toml's [tool.maturin] include).
packaged=python/veil/_web
rm -rf "$packaged"
cp -r "$dist" "$packaged"
echo "build_web: built $dist ($(du -sh "$dist" | cut -f1)), copied to $packaged"
