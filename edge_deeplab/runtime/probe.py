"""Whether an accelerator runs all of a model, asked in a subprocess
(``python -m edge_deeplab.runtime probe MODEL gpu``) so a driver crash cannot take the caller down.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from edge_deeplab.core.errors import DelegateUnavailableError, EdgeDeeplabError
from edge_deeplab.core.native_logs import capture_native_stderr, parse_delegate_log
from edge_deeplab.runtime.opener import open_runner


def probe_accelerator(path, accelerator: str = "gpu", timeout: float = 600, run: bool = False) -> dict:
    """Checks, in a subprocess, whether ``accelerator`` runs all of ``path``.

    Args:
        path: a .tflite file.
        accelerator: ``gpu`` or ``npu``.
        timeout: seconds before the probe is abandoned.
        run: also run one inference (catches run-time kernel failures, costs a forward pass).

    Returns:
        ``{"available": bool, "fully_accelerated": bool|None, "unsupported_ops": [...],
        "gpu_ops": int|None, "cpu_ops": int|None, "error": str|None}``. ``available`` is False when
        the accelerator itself cannot start here (no driver, no vendor library, crash).
    """
    cmd = [sys.executable, "-m", "edge_deeplab.runtime", "probe", str(path), accelerator]
    if run:
        cmd.append("--run")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"available": False, "fully_accelerated": None, "unsupported_ops": [],
                "error": f"{accelerator} probe timed out after {timeout:.0f}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sig = -proc.returncode if proc.returncode < 0 else None
    return {"available": False, "fully_accelerated": None, "unsupported_ops": [],
            "error": f"{accelerator} probe crashed" + (f" (signal {sig})" if sig else f" (exit {proc.returncode})")}


def probe_main(path: str, accelerator: str, do_run: bool) -> dict:
    res = {"available": True, "fully_accelerated": None, "unsupported_ops": [], "gpu_ops": None,
           "cpu_ops": None, "error": None}
    try:
        r = open_runner(path, accelerator=accelerator, runtime="litert", allow_fallback=True)
    except DelegateUnavailableError as e:
        res.update(available=False, error=str(e))
        return res
    except EdgeDeeplabError as e:
        res.update(available=True, error=str(e))
        return res
    parsed = parse_delegate_log(r.log)
    res.update(fully_accelerated=r.fully_accelerated, unsupported_ops=r.unsupported_ops,
               gpu_ops=parsed["gpu_ops"], cpu_ops=parsed["cpu_ops"])
    if do_run:
        x = np.zeros(r.input.shape, r.input.dtype)
        with capture_native_stderr():
            r.run(x)
    r.close()
    return res
