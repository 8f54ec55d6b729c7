#!/usr/bin/env bash
# Installs what the browser page needs to build and to be tested:
#   apt: Chromium (tests and benchmarks drive it headless), Debian's Rust
#        toolchain that can build the wasm32 standard library from source
#        (rustc-web, cargo-web, rust-web-src) and the wasm linker (lld-16);
#        Node.js + npm when missing;
#   pip: playwright (the Python driver only: its own browser download does not
#        work offline, the tests use /usr/bin/chromium);
#   npm: the page's packages (onnxruntime-web, stackblur-canvas), from the lock file;
#   cargo: the wasm-bindgen CLI, at the exact version of rust/veil-wasm's
#        wasm-bindgen crate, into target/tools (built once: a few minutes).
# Usage: scripts/install_web_deps.sh   (as root, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PYTHON=${PYTHON:-$root/.venv/bin/python}

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

packages=(chromium chromium-driver rustc-web cargo-web rust-web-src lld-16)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_web_deps: apt-get install ${missing[*]}"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$PYTHON" ]; then
  echo "install_web_deps: no Python at $PYTHON (create the venv first, or set PYTHON)" >&2
  exit 1
fi
"$PYTHON" -m pip install --quiet "playwright>=1.45"

(cd web && npm ci --ignore-scripts --no-audit --no-fund)

# Any cargo builds the CLI (rustup's is fine; it needs Rust >= 1.86); the
# lock file it ships with keeps its dependencies as released.
bindgen_version=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' rust/veil-wasm/Cargo.toml)
[ -n "$bindgen_version" ] || { echo "install_web_deps: no exact wasm-bindgen version in rust/veil-wasm/Cargo.toml" >&2; exit 1; }
tools=$root/target/tools
if [ "$("$tools/bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $bindgen_version" ]; then
  echo "install_web_deps: cargo install wasm-bindgen-cli $bindgen_version into $tools"
  cargo install --quiet --root "$tools" wasm-bindgen-cli --version "$bindgen_version" --locked
fi
echo "install_web_deps: done"
