"""Progress of long loops (training, QAT, labelling) that suits both a terminal and a log file.

On a terminal, Keras' progress bar (one line rewritten in place). When the stream is not a terminal
(a piped or redirected log), one complete line per interval instead: a carriage-return bar would
put thousands of updates on one line of the log.

Example:
    >>> import io
    >>> log = io.StringIO()
    >>> p = progress(100, "train", stream=log, every=0.5)
    >>> for step in range(1, 101):
    ...     p.update(step, [("loss", 1.0 / step)])
    >>> print(log.getvalue(), end="")
    train: step 50/100 (50%), loss 0.0200
    train: step 100/100 (100%), loss 0.0100
"""

from __future__ import annotations

import sys
import time
from typing import Optional, Sequence, Tuple


def is_terminal(stream) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """One line per ``every`` fraction of ``total`` (and at the end), in the Progbar interface.

    Args:
        total: the last step.
        name: the line's prefix (``train``, ``qat``, ``labelling``).
        stream: where lines go (default stdout).
        every: fraction of ``total`` between lines (default 5%).
        unit: what a step counts (``step``, ``frame``).
        in_place: rewrite one line in place (``\\r``; for a terminal) instead of one line each
            (a shorter line blanks what the longer one left); the line ends at ``total``, before a
            :meth:`message`, or at :meth:`close` (call it when the loop stops early).

    Example:
        >>> import io
        >>> log = io.StringIO()
        >>> p = LineProgress(4, "labelling", stream=log, every=0.5, unit="frame", in_place=True)
        >>> for i in range(1, 5):
        ...     p.update(i)
        >>> log.getvalue()
        '\\rlabelling: frame 2/4 (50%)\\rlabelling: frame 4/4 (100%)\\n'
    """

    def __init__(self, total: int, name: str, stream=None, every: float = 0.05, unit: str = "step",
                 in_place: bool = False):
        self.total, self.name, self.unit = max(1, int(total)), name, unit
        self.stream = stream
        self.in_place = bool(in_place)
        self._open_line = False
        self._width = 0  # of the line on screen (in place)
        self._ended = False  # the 100% line is out: later updates at the total add nothing
        self.interval = max(1, int(round(self.total * every)))
        self._next = self.interval
        self._t0 = time.time()
        self._first: Optional[int] = None

    def update(self, current: int, values: Sequence[Tuple[str, float]] = ()) -> None:
        current = int(current)
        if self._ended and current >= self.total:
            return
        if self._first is None:
            self._first = current
        if current < self._next and current < self.total:
            return
        while self._next <= current:
            self._next += self.interval
        parts = [f"{self.name}: {self.unit} {current}/{self.total} ({100 * current // self.total}%)"]
        parts += [f"{k} {v:.4f}" for k, v in values]
        done = current - (self._first or 0)
        elapsed = time.time() - self._t0
        if done > 0 and elapsed >= 1.0 and current < self.total:
            parts.append(f"{done / elapsed:.2f} {self.unit}s/s")
        line, stream = ", ".join(parts), self.stream or sys.stdout
        self._ended = current >= self.total
        if self.in_place:
            self._open_line = not self._ended
            padded, self._width = line.ljust(self._width), len(line)
            print(f"\r{padded}", end="" if self._open_line else "\n", file=stream, flush=True)
        else:
            print(line, file=stream, flush=True)

    def close(self) -> None:
        """Ends an in-place line left open (the loop stopped before ``total``), so what is printed
        next starts on a line of its own."""
        if self._open_line:
            print(file=self.stream or sys.stdout, flush=True)
            self._open_line = False

    def message(self, text: str) -> None:
        """A line of its own (a checkpoint note)."""
        self.close()
        print(text, file=self.stream or sys.stdout, flush=True)


class _BarProgress:
    """Keras' Progbar on a terminal; :meth:`message` first ends the bar's line."""

    def __init__(self, total: int, stateful_metrics):
        from edge_deeplab.core._tf import keras

        self._bar = keras.utils.Progbar(total, stateful_metrics=list(stateful_metrics), verbose=1)

    def update(self, current: int, values=()) -> None:
        self._bar.update(current, list(values))

    def message(self, text: str) -> None:
        print(f"\n{text}", flush=True)


def progress(total: int, name: str, stateful_metrics: Sequence[str] = (), stream=None,
             every: float = 0.05):
    """A progress reporter for ``total`` steps: Keras' bar on a terminal stdout, else :class:`LineProgress`.

    Args:
        total: the last step.
        name: prefix of the log lines.
        stateful_metrics: metric names shown as given (not averaged) by the bar.
        stream: force line mode on this stream (tests, stderr loops).
        every: line interval as a fraction of ``total``.

    Example:
        >>> import io
        >>> type(progress(10, "qat", stream=io.StringIO())).__name__
        'LineProgress'
    """
    if stream is None and is_terminal(sys.stdout):
        return _BarProgress(total, stateful_metrics)
    return LineProgress(total, name, stream=stream, every=every)
