"""Overlapped stages: each step of the demo on its own thread, joined by small bounded queues.

:class:`StagePipeline` runs ``source -> stage 1 -> stage 2 -> ... -> consumer`` where the source
iterator and every stage run on their own threads and the consumer (the caller, on the main thread:
it writes the video or shows the window) iterates the results. One thread per stage and FIFO queues
keep frames in order; bounded queues (``depth`` items) keep memory flat and make a fast stage wait
for a slow one instead of running ahead, so no frame is ever dropped here (a live camera drops stale
frames itself, before the pipeline: :mod:`demos.capture`). OpenCV, NumPy and the TFLite runtimes
release the GIL in their kernels, so on two or more cores the stages really run at the same time:
the frame rate is set by the slowest stage, not by the sum of all of them.

Failure and interruption:

* a stage (or the source) that raises stops the run: every thread is told to stop, the consumer
  gets the stage's own exception (a one-line :class:`~edge_deeplab.core.errors.EdgeDeeplabError`
  passes through as it is) and :meth:`close` joins every thread, so nothing is left running;
* Ctrl-C / SIGTERM arrive in the main thread, inside the consumer's loop; ``with StagePipeline(...)``
  (or :meth:`close` in a ``finally``) stops and joins the threads on the way out.

Example:
    >>> with StagePipeline(range(5), [("double", lambda x: 2 * x), ("inc", lambda x: x + 1)]) as p:
    ...     list(p)
    [1, 3, 5, 7, 9]
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

#: What a queue carries after the last item.
_END = object()


class _Failed:
    """Passed downstream in place of an item when a stage raised (so the consumer wakes up)."""

    def __init__(self, stage: str, error: BaseException):
        self.stage, self.error = stage, error


class StagePipeline:
    """Runs ``stages`` over ``source`` on one thread each; iterate it for the results in order.

    Args:
        source: an iterable of items (frames); it is iterated on its own thread.
        stages: ``(name, function)`` pairs; each function maps one item to the next stage's item.
        depth: capacity of each queue between two threads (>= 1).
        join_timeout: seconds :meth:`close` waits for each thread to finish its current item.

    Attributes:
        threads: the worker threads (their names start with ``stage:``).

    Example:
        >>> p = StagePipeline(iter("abc"), [("upper", str.upper)])
        >>> "".join(p), p.close()
        ('ABC', None)
    """

    def __init__(self, source: Iterable, stages: Sequence[Tuple[str, Callable]], depth: int = 2,
                 join_timeout: float = 10.0):
        self._stop = threading.Event()
        self._join_timeout = float(join_timeout)
        self._queues: List[queue.Queue] = [queue.Queue(maxsize=max(1, int(depth)))
                                           for _ in range(len(stages) + 1)]
        self.threads: List[threading.Thread] = [
            threading.Thread(target=self._feed, args=(source, self._queues[0]),
                             name="stage:source", daemon=True)]
        for i, (name, fn) in enumerate(stages):
            self.threads.append(threading.Thread(
                target=self._work, args=(name, fn, self._queues[i], self._queues[i + 1]),
                name=f"stage:{name}", daemon=True))
        self._started = False
        self._done = False

    # -- threads --------------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item) -> bool:
        """Puts ``item`` unless the run is stopping; False when it stopped."""
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue):
        while not self._stop.is_set():
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue
        return _END

    def _feed(self, source: Iterable, out: queue.Queue) -> None:
        try:
            for item in source:
                if not self._put(out, item):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put(out, _Failed("source", e))
            return
        self._put(out, _END)

    def _work(self, name: str, fn: Callable, inq: queue.Queue, out: queue.Queue) -> None:
        while True:
            item = self._get(inq)
            if item is _END or isinstance(item, _Failed):
                self._put(out, item)
                return
            try:
                result = fn(item)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
                self._put(out, _Failed(name, e))
                return
            if not self._put(out, result):
                return

    # -- consumer -------------------------------------------------------------------------------
    def start(self) -> "StagePipeline":
        if not self._started:
            self._started = True
            for t in self.threads:
                t.start()
        return self

    def __iter__(self) -> Iterator:
        self.start()
        last = self._queues[-1]
        while not self._done:
            try:
                item = last.get(timeout=0.05)  # a timeout, so Ctrl-C is seen at once
            except queue.Empty:
                if not any(t.is_alive() for t in self.threads) and last.empty():
                    self._done = True  # every thread gone without an end marker: stopped
                continue
            if item is _END:
                self._done = True
                return
            if isinstance(item, _Failed):
                self._done = True
                self.close()
                raise item.error
            yield item

    def stop(self) -> None:
        """Tells every thread to stop, without waiting (then close what they may wait on, and
        :meth:`close`)."""
        self._stop.set()

    def close(self) -> None:
        """Stops every thread and waits for them (each finishes the item it is working on)."""
        self._stop.set()
        me = threading.current_thread()
        for t in self.threads:
            if t.is_alive() and t is not me:
                t.join(self._join_timeout)

    @property
    def alive(self) -> List[str]:
        """Names of the threads still running."""
        return [t.name for t in self.threads if t.is_alive()]

    def __enter__(self) -> "StagePipeline":
        return self.start()

    def __exit__(self, *exc) -> Optional[bool]:
        self.close()
        return None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def opencv_threads_for(busy_threads: int, cores: Optional[int] = None) -> int:
    """OpenCV threads per call when ``busy_threads`` pipeline threads share the cores.

    The stages already run side by side; OpenCV's own pool on top of that (one worker per core by
    default) only oversubscribes the cores, and its callers spin while they wait for workers that
    another stage's thread holds off the core: on the 2-core machine the 720p demo ran 1.4-1.7x
    faster end to end with one OpenCV thread per call (benchmarks/README.md).

    Args:
        busy_threads: threads of the pipeline that compute (decode, inference, matte, write).
        cores: cores to share (default: :func:`usable_cores`).

    Example:
        >>> opencv_threads_for(4, cores=2), opencv_threads_for(4, cores=16)
        (1, 4)
    """
    return max(1, (cores or usable_cores()) // max(1, int(busy_threads)))

