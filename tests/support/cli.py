"""The one check of the toolkit's error contract: a failure is one line that names what went wrong."""

from __future__ import annotations

import subprocess


def assert_one_line_error(out, *needles: str, rc=None, code=None, prefix: str | None = None) -> str:
    """Asserts ``out`` is a one-line error naming each of ``needles``; returns that line.

    ``out`` is what the user sees: captured stderr text (``capsys.readouterr().err``, or the
    capture itself), a :class:`subprocess.CompletedProcess` (its stderr; its return code is
    ``rc``), or an exception (``pytest.raises``' ``ExceptionInfo`` or the exception: its message,
    which must hold no newline at all). Stderr must hold exactly one non-empty line and no
    ``Traceback``. ``rc`` (an exit status), when given, must be non-zero; ``code`` is the exact
    status expected; ``prefix`` is how the line must start (e.g. ``"edge-deeplab export: error:"``).
    """
    if isinstance(out, subprocess.CompletedProcess):
        out, rc = out.stderr, out.returncode
    elif hasattr(out, "err"):  # pytest's CaptureResult
        out = out.err
    if isinstance(out, BaseException) or hasattr(out, "value"):  # an exception (info)
        text = str(getattr(out, "value", out))
        assert "\n" not in text, text
        lines = [text]
    else:
        text = out
        lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    line = lines[0].strip()
    for needle in needles:
        assert needle in line, (needle, line)
    if prefix is not None:
        assert line.startswith(prefix), (prefix, line)
    if rc is not None or code is not None:
        assert rc is not None and rc != 0, (rc, line)
        assert code is None or rc == code, (rc, code, line)
    return line


def default_sigint() -> None:
    """``preexec_fn`` of a child a test sends SIGINT: restores SIGINT's default disposition, so
    the child's Python raises KeyboardInterrupt even when the test run itself was started as a
    shell's background job (which starts with SIGINT ignored, inherited by every child)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
