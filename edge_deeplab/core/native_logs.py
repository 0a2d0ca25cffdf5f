"""Keeps TensorFlow's and LiteRT's native start-up chatter out of users' terminals.

TensorFlow (absl) and LiteRT write INFO lines straight to file descriptor 2 from C++ (environment
creation, accelerator registration, CUDA probing on CPU-only machines), bypassing Python logging and
``TF_CPP_MIN_LOG_LEVEL``. :func:`filtered_stderr` routes fd 2 through a pipe and a thread that drops
lines matching known-noise patterns and forwards everything else unchanged, so real warnings and our
one-line errors still reach the user. ``EDGE_DEEPLAB_SHOW_NATIVE_LOGS=1`` turns the filter off.

This module is the one home of native-log handling: filtering (:func:`filtered_stderr`,
:func:`silence_stderr_at_exit`), capturing (:func:`capture_native_stderr`) and reading what was
captured (:func:`parse_delegate_log`, :func:`native_error_line`, :func:`last_meaningful_line`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Dict

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


# --------------------------------------------------------------------------------------------
# Capturing native logs (LiteRT writes delegate reports to fd 2) and reading them
# --------------------------------------------------------------------------------------------

class _Captured:
    text = ""


@contextlib.contextmanager
def capture_native_stderr():
    """Redirects the process' fd 2 (native C++ logs included) into a buffer; fd 1 too, as some
    native libraries print there (LiteRT's GPU accelerator: "INFO: Failed to load OpenCL
    library ..."), and stdout must carry only a command's own output (JSON, tables, pipes).

    Yields an object whose ``.text`` holds the captured output once the block exits. Set
    ``EDGE_DEEPLAB_SHOW_NATIVE_LOGS=1`` to let the logs through as well (stdout chatter then goes
    to stderr).
    """
    cap = _Captured()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    try:
        saved_out = os.dup(1)
    except OSError:
        saved_out = None
    if os.environ.get("EDGE_DEEPLAB_SHOW_NATIVE_LOGS") == "1":
        if saved_out is not None:
            os.dup2(2, 1)
        try:
            yield cap
        finally:
            if saved_out is not None:
                os.dup2(saved_out, 1)
                os.close(saved_out)
        return
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        if saved_out is not None:
            os.dup2(tmp.fileno(), 1)
        try:
            yield cap
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001
                    pass
            os.dup2(saved, 2)
            os.close(saved)
            if saved_out is not None:
                os.dup2(saved_out, 1)
                os.close(saved_out)
            tmp.seek(0)
            cap.text = tmp.read().decode("utf-8", "replace")


_UNSUPPORTED_RE = re.compile(r"^([A-Z][A-Z0-9_]+): (.+)$")
_PARTITION_RE = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+) operations? will run on the CPU")


def parse_delegate_log(text: str) -> dict:
    """Parses LiteRT/TFLite GPU delegate reports.

    Returns:
        ``{"unsupported_ops": {OP: reason}, "gpu_ops": int|None, "cpu_ops": int|None}``.
    """
    unsupported: Dict[str, str] = {}
    in_block = False
    for line in text.splitlines():
        line = line.strip()
        if "operations are not supported by" in line:
            in_block = True
            continue
        if in_block:
            m = _UNSUPPORTED_RE.match(line)
            if m:
                unsupported.setdefault(m.group(1), m.group(2))
                continue
            in_block = False
    m = _PARTITION_RE.search(text)
    return {"unsupported_ops": unsupported,
            "gpu_ops": int(m.group(1)) if m else None,
            "cpu_ops": int(m.group(2)) if m else None}


_ERROR_HINTS = (
    # (pattern in the native log, message) - most specific first
    ("No adapters found", "no GPU adapter found (no Vulkan/WebGPU driver; on Debian install "
                          "mesa-vulkan-drivers >= 24 or a vendor GPU driver)"),
    ("Found no drivers", "no Vulkan driver found"),
    ("Failed to initialize WebGPU environment", "WebGPU environment could not be initialized"),
    ("Failed to load OpenCL", None),
)


#: Lines of a native log that name why a model failed to load, prepare or run.
_OP_FAILURE_HINTS = ("unresolved custom op", "failed to prepare", "failed to invoke", "not supported",
                     "Didn't find op", "failed to allocate", "Failed to allocate")


def native_error_line(text: str, exc: BaseException) -> str:
    """The most useful single line explaining a native failure.

    Checks, in order: known driver/accelerator problems (rephrased with a fix), a native log line
    naming the failing op (e.g. the unresolved custom op), then the first line that is not log noise.

    Args:
        text: the native stderr captured around the failing call.
        exc: the exception the runtime raised.
    """
    for pattern, msg in _ERROR_HINTS:
        if msg and pattern in text:
            return msg
    lines = [line.strip().lstrip("\u2514 ").strip() for line in text.splitlines()]
    for hint in _OP_FAILURE_HINTS:
        for line in lines:
            if hint in line and "[./" not in line:
                return line.removeprefix("ERROR: ").strip()
    for line in (str(exc) + "\n" + text).splitlines():
        line = line.strip().lstrip("\u2514 ").strip()
        if not line or line.startswith(("INFO", "I0000", "WARNING", "Warning", "=== ", "third_party")):
            continue
        if line.startswith("ERROR: [") and line.endswith("]"):
            continue
        return line
    return type(exc).__name__


def last_meaningful_line(text: str) -> str:
    """The last line of a crashed process' stderr that says something (not log or traceback noise)."""
    for line in reversed(text.strip().splitlines()):
        s = line.strip()
        if s and not s.startswith(("INFO:", "I0000", "WARNING: Logging", "Fatal Python error", "Current thread",
                                   "File ", "Thread ", "Extension modules")):
            return s[:200]
    return ""
