#!/usr/bin/env bash
# Creates (once) and caches an isolated venv with MediaPipe Tasks, for the interop test and for
# trying exports the way phone apps load them. MediaPipe pins its own numpy/OpenCV, so it must
# never enter the main .venv; this venv holds mediapipe only (no TensorFlow, no edge_deeplab).
#
#   scripts/mediapipe_venv.sh            # -> prints the venv's python path
#   MEDIAPIPE_VENV=/tmp/mp scripts/mediapipe_venv.sh
#
# Exit status 0 and the python path on the last line when the venv works; 3 when mediapipe cannot
# be installed (no network for pip, no wheel for this Python/platform); 1 when the venv was made
# but is wrong (mediapipe does not import, or is another version). The last stderr line says why.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MEDIAPIPE_VENV:-.venv-mediapipe}"
# One creator at a time (two test processes may ask at once): the others wait, then find it made.
exec 9>"$VENV.lock"
flock 9
VERSION="${MEDIAPIPE_VERSION:-0.10.35}"
PY="$VENV/bin/python"

check() { "$PY" -c "import mediapipe as mp, sys; sys.exit(0 if mp.__version__ == '$VERSION' else 1)" 2>/dev/null; }

if [ -x "$PY" ] && check; then
  echo "$PY"
  exit 0
fi
rm -rf "$VENV.tmp"
python3 -m venv "$VENV.tmp"
if ! "$VENV.tmp/bin/python" -m pip install -q --disable-pip-version-check "mediapipe==$VERSION" >&2; then
  rm -rf "$VENV.tmp"
  echo "cannot install mediapipe==$VERSION into a $(python3 -V 2>&1) venv (pip failed; see above)" >&2
  exit 3
fi
rm -rf "$VENV"
mv "$VENV.tmp" "$VENV"
# venv scripts hard-code their directory; python itself runs from anywhere, which is all we use.
check || { echo "mediapipe $VERSION does not import in $VENV" >&2; exit 1; }
echo "$PY"
