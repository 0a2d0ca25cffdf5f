"""The MediaPipe venv: MediaPipe Tasks in ``.venv-mediapipe`` (or ``$MEDIAPIPE_VENV``), no TensorFlow.

``scripts/mediapipe_venv.sh`` makes and caches it. :func:`mediapipe_python` runs the script and is
the probe of the ``mediapipe`` capability (gated in ``tests/conftest.py``): a venv that cannot be
*created* (the script's exit 3: no network for pip, no wheel for this Python) raises
:class:`~tests.support.capability.Missing` (a skip, a failure under ``CI=true``); any other failure
(exit 1: a venv made but broken, e.g. mediapipe that does not import) raises ``RuntimeError``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.capability import Missing

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "mediapipe_venv.sh"


def mediapipe_python(env: dict | None = None) -> Path:
    """The MediaPipe venv's python (created when absent); raises as the module doc says.

    Args:
        env: the script's environment (``None``: this process's; e.g. ``MEDIAPIPE_VENV``).

    Example:
        >>> mediapipe_python().name  # doctest: +SKIP
        'python'
    """
    try:
        proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=900, cwd=ROOT,
                              env=env)
    except subprocess.TimeoutExpired:
        raise Missing("cannot create the MediaPipe venv: scripts/mediapipe_venv.sh took over "
                      "900 s") from None
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if proc.returncode == 3:
        raise Missing(f"cannot create the MediaPipe venv (scripts/mediapipe_venv.sh: {tail})")
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/mediapipe_venv.sh failed (exit {proc.returncode}): {tail}")
    py = Path(proc.stdout.strip().splitlines()[-1])
    py = py if py.is_absolute() else ROOT / py
    if not py.is_file():
        raise RuntimeError(f"scripts/mediapipe_venv.sh printed {py}, which is not a file")
    return py
