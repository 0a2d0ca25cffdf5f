"""The suite's one capability gate: when a test may skip because the machine lacks something, and
when it must fail instead (its verdict is acted on only by ``tests/conftest.py``'s ``require``).

=============  ================================================  ==========================================
capability     what it is                                        who installs it
=============  ================================================  ==========================================
``gpu``        the LiteRT GPU accelerator (lavapipe Vulkan)      this project (``scripts/install.sh``, apt)
``board``      ``.venv-tflite-runtime`` (tflite_runtime only)    this project (``scripts/tflite_runtime_venv.sh``)
``mediapipe``  ``.venv-mediapipe`` (MediaPipe Tasks)             this project (``scripts/mediapipe_venv.sh``)
``strace``     which process wrote a file (multi-worker)          this project (``scripts/install.sh``, apt)
``npm``        models fetched from npm (the selfie teacher)      the machine (``npm`` is not ours to install)
=============  ================================================  ==========================================

A probe says "this machine lacks it" by raising :class:`Missing`; that is the only skip, and its
reason names the capability. Under ``CI=true`` (``.ci/run`` exports it) a capability the project
installs itself (lavapipe, the side venvs, strace) may not be missing: the gate fails the test, so a CI run where the GPU, board and
MediaPipe tests all skip is red, not green. Anything else a probe raises (a crash, a timeout, a venv
that was made but is broken) fails the test everywhere. Each probe runs once per session; its
outcome, skip or fail included, is remembered.
"""

from __future__ import annotations

import os

#: capability -> who installs it; ``True``: this project does (so CI must have it).
PROJECT_INSTALLED = {"gpu": True, "board": True, "mediapipe": True, "strace": True, "npm": False}

_OUTCOMES: dict = {}


class Missing(Exception):
    """Raised by a probe: the machine lacks the capability (the message says what is missing)."""


def in_ci() -> bool:
    """True when ``CI`` is set to ``true`` (or ``1``), as ``.ci/run`` and CI services set it."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def verdict(name: str, probe) -> tuple:
    """What the gate decides for ``name``: ``("ok", probe()'s result)``, ``("skip", reason)`` or
    ``("fail", message)``, as the module doc says; ``probe`` runs once per session (memoized per
    ``name``). ``tests/conftest.py``'s ``require`` turns a skip or fail into pytest's.

    Args:
        name: one of :data:`PROJECT_INSTALLED`.
        probe: a no-argument callable returning what the tests need (a path, a dict); it raises
            :class:`Missing` when the machine lacks the capability.

    Example:
        >>> verdict("npm", lambda: "npm-here")
        ('ok', 'npm-here')
    """
    if name not in PROJECT_INSTALLED:
        raise KeyError(f"unknown capability {name!r}; known: {sorted(PROJECT_INSTALLED)}")
    if name not in _OUTCOMES:
        try:
            _OUTCOMES[name] = ("ok", probe())
        except Missing as e:
            _OUTCOMES[name] = ("missing", str(e))
        except Exception as e:  # noqa: BLE001 - any other failure of a probe is the test's failure
            _OUTCOMES[name] = ("broken", f"{type(e).__name__}: {e}")
    kind, value = _OUTCOMES[name]
    if kind == "ok":
        return "ok", value
    if kind == "missing" and not (PROJECT_INSTALLED[name] and in_ci()):
        return "skip", f"capability {name} missing: {value}"
    if kind == "missing":
        return "fail", (f"capability {name} missing under CI=true, but this project installs it "
                        f"itself, so it may not skip: {value}")
    return "fail", f"capability {name} is broken (a failure, not a missing capability): {value}"


def probe_strace() -> str:
    """The path of ``strace`` when it runs and may trace here; raises :class:`Missing` otherwise.

    Example:
        >>> probe_strace()  # doctest: +SKIP
        '/usr/bin/strace'
    """
    import shutil
    import subprocess

    path = shutil.which("strace")
    if path is None:
        raise Missing("strace is not installed (scripts/install.sh installs it with apt)")
    p = subprocess.run([path, "-f", "-qq", "-o", os.devnull, "true"], capture_output=True, text=True,
                       timeout=60)
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise Missing(f"strace cannot trace here (ptrace not permitted?): {tail}")
    return path


def forget(name: str) -> None:
    """Drop the remembered outcome of ``name`` (the gate's own tests use it)."""
    _OUTCOMES.pop(name, None)
