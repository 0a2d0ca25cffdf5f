"""The probe behind the ``gpu`` capability (the LiteRT GPU accelerator; gated in ``tests/conftest.py``).

Probed in a subprocess (:func:`edge_deeplab.runtime.probe_accelerator`) on the tiny model, once per
session (the gate, :mod:`tests.support.capability`, remembers the outcome). Only an accelerator that
reports it cannot start (no Vulkan device or driver: ``DelegateUnavailableError``) is a missing
capability; a probe that crashes (signal, exit code) or times out is an error, never a skip.
"""

from __future__ import annotations

from tests.support.capability import Missing


def probe_gpu(pytestconfig) -> dict:
    """The probe's answer when the accelerator starts; raises :class:`Missing` or ``RuntimeError``.

    Args:
        pytestconfig: the session's config (the tiny model is cached under its cache folder).

    Example:
        >>> from tests.support.capability import verdict
        >>> verdict("gpu", lambda: probe_gpu(pytestconfig))[1]["available"]  # doctest: +SKIP
        True
    """
    from edge_deeplab.runtime import probe_accelerator
    from tests.support.tiny import tiny_tflite

    p = probe_accelerator(tiny_tflite(pytestconfig), "gpu", timeout=300)
    err = p.get("error") or ""
    if p.get("available") and not err:
        return p
    if not p.get("available") and not ("crashed" in err or "timed out" in err):
        raise Missing(f"no LiteRT GPU accelerator here: {err}")
    raise RuntimeError(f"the LiteRT GPU probe failed: {err}")
