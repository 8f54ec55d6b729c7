#!/usr/bin/env bash
# Creates the evaluation-only environment for benches/bench_irreversibility.py:
# a separate virtual environment (.venv-eval by default) holding native dlib
# and its models (benches/requirements-eval.txt), layered over the main
# development venv (.venv) so that `import veil`, numpy and onnxruntime come
# from there. The main venv is never changed: dlib stays out of veil's
# runtime dependencies and out of the environment its tests run in.
#
# Usage:  scripts/setup_eval_env.sh            (after .venv has veil built in)
#         .venv-eval/bin/python benches/bench_irreversibility.py
# Env:    VEIL_MAIN_VENV  the venv with veil (default: .venv)
#         VEIL_EVAL_VENV  where to create the eval venv (default: .venv-eval)
# Re-running it is safe: it reuses the venv and pip skips what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
main_venv=${VEIL_MAIN_VENV:-.venv}
eval_venv=${VEIL_EVAL_VENV:-.venv-eval}

main_py="$main_venv/bin/python"
[ -x "$main_py" ] || { echo "setup_eval_env: $main_py not found: create the main venv and build veil into it first (maturin develop)" >&2; exit 1; }
"$main_py" -c "import veil" 2>/dev/null || echo "setup_eval_env: warning: veil is not importable from $main_venv; the bench will skip until it is" >&2

# The same interpreter the main venv was made from, so its compiled packages
# (numpy, onnxruntime, veil's extension) load in the eval venv too.
base_py=$("$main_py" -c 'import sys; print(sys._base_executable)')
main_site=$("$main_py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
main_site=$(cd "$main_site" && pwd)

if [ ! -x "$eval_venv/bin/python" ]; then
  "$base_py" -m venv "$eval_venv"
fi
eval_site=$("$eval_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# Layer the main venv's packages after the eval venv's own. site.addsitedir
# (rather than a bare path line) also runs the .pth files there, e.g. the one
# an editable `maturin develop` install of veil leaves.
printf 'import site; site.addsitedir(%s)\n' "'$main_site'" > "$eval_site/zz_veil_main_venv.pth"

"$eval_venv/bin/python" -m pip install --disable-pip-version-check -q -r benches/requirements-eval.txt

"$eval_venv/bin/python" - <<'PY'
import os
from importlib.metadata import version

import dlib
import face_recognition_models as m

for f in (m.face_recognition_model_location(), m.pose_predictor_five_point_model_location(),
          m.pose_predictor_model_location(), m.cnn_face_detector_model_location()):
    assert os.path.isfile(f), f
print(f"setup_eval_env: dlib-bin {version('dlib-bin')} and face-recognition-models "
      f"{version('face-recognition-models')} ready")
PY
echo "setup_eval_env: run  $eval_venv/bin/python benches/bench_irreversibility.py"
