"""Keeps TensorFlow's and LiteRT's native start-up chatter out of users' terminals.

TensorFlow (absl) and LiteRT write INFO lines straight to file descriptor 2 from C++ (environment
creation, accelerator registration, CUDA probing on CPU-only machines), bypassing Python logging and
``TF_CPP_MIN_LOG_LEVEL``. :func:`filtered_stderr` routes fd 2 through a pipe and a thread that drops
lines matching known-noise patterns and forwards everything else unchanged, so real warnings and our
one-line errors still reach the user. ``EDGE_DEEPLAB_SHOW_NATIVE_LOGS=1`` turns the filter off.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading

NOISE = re.compile(
    r"^(INFO: |I0000 |W0000 |WARNING: All log messages before absl|WARNING: Logging before InitGoogle"
    r"|WARNING: \[(npu_registry|compiler_plugin|compiled_model)\.cc|\u2514 Could not load shared library"
    r"|Warning: maxDynamic|To enable the following instructions|E0000 \S+ \d+ cuda"
    r"|.*cuda_platform\.cc|.*cudart_stub\.cc|.*port\.cc:\d+\] oneDNN)")


def is_noise(line: str) -> bool:
    """Whether a native log line is known start-up/teardown chatter."""
    return bool(NOISE.match(line))


@contextlib.contextmanager
def filtered_stderr():
    """Filters native noise out of fd 2 for the duration of the block (process-wide)."""
    if os.environ.get("EDGE_DEEPLAB_SHOW_NATIVE_LOGS") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except OSError:
        yield
        return
    r, w = os.pipe()
    os.dup2(w, 2)
    os.close(w)

    def pump():
        out = os.fdopen(saved, "wb", closefd=False)
        with os.fdopen(r, "rb") as src:
            for raw in src:
                if not is_noise(raw.decode("utf-8", "replace")):
                    out.write(raw)
                    out.flush()

    t = threading.Thread(target=pump, name="native-log-filter", daemon=True)
    t.start()
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump drains and stops
        t.join(5)
        os.close(saved)


def silence_stderr_at_exit() -> None:
    """Points fd 2 at /dev/null once the program is done (``atexit``).

    Runtimes still alive at interpreter teardown log their destruction natively; by then the
    command has printed everything it had to say. No-op with ``EDGE_DEEPLAB_SHOW_NATIVE_LOGS=1``.
    """
    import atexit

    if os.environ.get("EDGE_DEEPLAB_SHOW_NATIVE_LOGS") == "1":
        return

    def _silence():
        try:
            sys.stderr.flush()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except OSError:
            pass

    atexit.register(_silence)
