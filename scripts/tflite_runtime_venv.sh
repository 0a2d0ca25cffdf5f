#!/usr/bin/env bash
# Creates (once) and caches the "board" venv: what a Raspberry-Pi-like machine has, the classic
# tflite_runtime wheel and NumPy 1.x (tflite-runtime 2.14 is compiled against NumPy 1), with NO
# TensorFlow and NO ai-edge-litert. It must never share the main .venv (NumPy 2 there). This
# checkout is installed into it editable (--no-deps), so it always runs the current code; the
# tests run `edge-deeplab bench/eval/demo --runtime tflite_runtime` with it.
#
#   scripts/tflite_runtime_venv.sh                       # -> prints the venv's python path
#   TFLITE_RUNTIME_VENV=/tmp/board scripts/tflite_runtime_venv.sh
#
# Exit status 0 and the python path on the last line when the venv works; 3 when the packages
# cannot be installed (no network, no wheel for this Python/platform); 1 when the venv was made but
# is wrong (e.g. TensorFlow or ai_edge_litert importable in it). The last stderr line says why.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd -P)"
VENV="${TFLITE_RUNTIME_VENV:-.venv-tflite-runtime}"
# One creator at a time (two test processes may ask at once): the others wait, then find it made.
exec 9>"$VENV.lock"
flock 9
VERSION="${TFLITE_RUNTIME_VERSION:-2.14.0}"
PYTHON="${PYTHON:-python3}"
PY="$VENV/bin/python"
PIP=(-m pip install -q --disable-pip-version-check)

# The packages: tflite_runtime $VERSION on NumPy 1, and neither TensorFlow nor LiteRT.
check_packages() {
  "$PY" - "$VERSION" <<'EOF'
import importlib.util, sys
from importlib.metadata import version
want = sys.argv[1]
got = version("tflite-runtime")
if got != want:
    sys.exit(f"tflite-runtime is {got}, not {want}")
import numpy
if int(numpy.__version__.split(".")[0]) >= 2:
    sys.exit(f"numpy {numpy.__version__}: tflite-runtime {want} needs numpy<2")
for banned in ("tensorflow", "ai_edge_litert"):
    if importlib.util.find_spec(banned) is not None:
        sys.exit(f"{banned} is importable in the board venv; it must hold tflite_runtime only")
import cv2, flatbuffers, PIL  # noqa: F401,E401
from tflite_runtime.interpreter import Interpreter  # noqa: F401
EOF
}

# This checkout, editable, with a working `edge-deeplab` console script.
check_project() {
  "$PY" - "$ROOT" "$VENV/bin/edge-deeplab" <<'EOF'
import os, sys
root, cli = sys.argv[1], sys.argv[2]
import edge_deeplab
where = os.path.realpath(edge_deeplab.__file__)
if not where.startswith(os.path.join(root, "")):
    sys.exit(f"edge_deeplab comes from {where}, not this checkout ({root})")
if not os.access(cli, os.X_OK):
    sys.exit(f"no edge-deeplab console script at {cli}")
with open(cli, encoding="utf-8", errors="replace") as f:
    shebang = f.readline()[2:].strip()
if os.path.realpath(shebang) != os.path.realpath(sys.executable):
    sys.exit(f"{cli} runs {shebang}, not this venv's python")
from edge_deeplab.core.sysinfo import available_runtimes
rt = available_runtimes()
if set(rt) != {"tflite_runtime"}:
    sys.exit(f"available runtimes are {sorted(rt)}, expected tflite_runtime only")
EOF
}

if ! { [ -x "$PY" ] && check_packages 2>/dev/null; }; then
  rm -rf "$VENV.tmp"
  "$PYTHON" -m venv "$VENV.tmp"
  if ! "$VENV.tmp/bin/python" "${PIP[@]}" "tflite-runtime==$VERSION" "numpy<2" \
      "opencv-python-headless<4.11" pillow flatbuffers >&2; then
    rm -rf "$VENV.tmp"
    echo "cannot install tflite-runtime==$VERSION with numpy<2 into a $("$PYTHON" -V 2>&1) venv (pip failed; see above)" >&2
    exit 3
  fi
  rm -rf "$VENV"
  mv "$VENV.tmp" "$VENV"
fi
# Installed after the move: console scripts hard-code the venv's path.
if ! check_project 2>/dev/null; then
  if ! "$PY" "${PIP[@]}" --no-deps -e . >&2; then
    echo "cannot install this checkout into $VENV (pip install --no-deps -e . failed; see above)" >&2
    exit 3
  fi
fi
check_packages || exit 1
check_project || exit 1
echo "$PY"
