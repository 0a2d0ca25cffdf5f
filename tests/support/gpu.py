"""The suite's one answer to "does the LiteRT GPU accelerator start here?" (used by ``tests/conftest.py``).

Probed once per session, in a subprocess (:func:`edge_deeplab.runtime.probe_accelerator`), on the
tiny model. ``missing_capability`` is True only when the accelerator reports that it cannot start
(no Vulkan device or driver: ``DelegateUnavailableError``); a probe that crashes (signal, exit code)
or times out is not a missing capability, and the gate fails the test instead of skipping it.
"""

from __future__ import annotations

_CAPABILITY: dict = {}


def gpu_capability(pytestconfig) -> dict:
    """``{"available": bool, "missing_capability": bool, "error": str|None}`` (memoized)."""
    if _CAPABILITY:
        return _CAPABILITY
    from edge_deeplab.runtime import probe_accelerator
    from tests.support.tiny import tiny_tflite

    p = probe_accelerator(tiny_tflite(pytestconfig), "gpu", timeout=300)
    err = p.get("error")
    crashed = bool(err) and ("crashed" in err or "timed out" in err)
    _CAPABILITY.update(available=bool(p.get("available")) and not err,
                       missing_capability=not p.get("available") and not crashed, error=err)
    return _CAPABILITY
