"""The "board" venv: tflite_runtime 2.14 + NumPy 1, no TensorFlow, no LiteRT.

``scripts/tflite_runtime_venv.sh`` makes and caches it (``.venv-tflite-runtime``, or
``$TFLITE_RUNTIME_VENV``) with this checkout installed editable. :func:`board_python` runs the
script and is the probe of the ``board`` capability (gated in ``tests/conftest.py``): a venv that
cannot be *created* (the script's exit 3: no network for pip, no wheel for this Python/platform)
raises :class:`~tests.support.capability.Missing` naming the script's last stderr line (a skip,
but a failure under ``CI=true``); one that was created but is wrong (exit 1, e.g. TensorFlow
importable in it) raises ``RuntimeError`` (a failure everywhere).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from tests.support.capability import Missing

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "tflite_runtime_venv.sh"
PREDICT = ROOT / "tests" / "support" / "tflite_runtime_predict.py"
#: The tflite-runtime release the script installs.
VERSION = "2.14.0"


def board_python() -> Path:
    """The board venv's python (created when absent); raises as the module doc says.

    Example:
        >>> board_python().name  # doctest: +SKIP
        'python'
    """
    try:
        proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise Missing("cannot create the tflite_runtime venv: scripts/tflite_runtime_venv.sh took "
                      "over 900 s") from None
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if proc.returncode == 3:
        raise Missing(f"cannot create the tflite_runtime venv (scripts/tflite_runtime_venv.sh: {tail})")
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/tflite_runtime_venv.sh made a broken venv (exit "
                           f"{proc.returncode}): {tail}")
    py = Path(proc.stdout.strip().splitlines()[-1])
    py = py if py.is_absolute() else ROOT / py
    assert py.is_file(), proc.stdout
    return py


def board_predict(python: Path, model, images, tmp_dir: Path) -> np.ndarray:
    """``Runner.predict`` of each uint8 RGB image through tflite_runtime in the board venv."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        paths.append(str(tmp_dir / f"image_{i}.npy"))
        np.save(paths[-1], np.ascontiguousarray(img, np.uint8))
    out = tmp_dir / "predictions.npy"
    proc = subprocess.run([str(python), str(PREDICT), str(model), str(out), *paths],
                          capture_output=True, text=True, timeout=600, cwd=tmp_dir)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    info = json.loads(lines[-1])
    assert info["ok"] and info["runtime"] == "tflite_runtime", info
    assert info["runtime_version"] == VERSION, info
    return np.load(out)
