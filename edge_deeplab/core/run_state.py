"""The state of a run folder (``train``'s RUN, QAT's RUN/qat): a lock, a ``complete`` marker, the
float model a derived model was built from, and setting an old result aside.

* :func:`run_lock`: held while a command writes the folder. ``RUN/.lock`` holds the writer's pid
  and command; a second writer is refused in one line naming that pid; a lock left by a process
  that is gone (killed, machine rebooted) is taken over with a note on stderr.
* :func:`mark_complete` / :func:`read_complete`: ``RUN/complete.json``, written last, when the
  result is final. A finished run is not retrained by accident and ``--resume`` on it does nothing.
* :func:`~edge_deeplab.core.atomic_io.file_sha256`: the SHA-256 that QAT records of ``RUN/model.keras`` (``RUN/qat/origin.json``),
  so a QAT model built from other float weights is refused (:func:`stale_origin`).
* :func:`set_aside`: ``--force`` moves the old results into ``RUN/previous-N/`` rather than
  deleting them.

Example:
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> with run_lock(run, "train"):
    ...     _ = mark_complete(run, {"final_step": 4})
    >>> read_complete(run)["final_step"], (run / LOCK_NAME).exists()
    (4, False)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

from edge_deeplab.core.atomic_io import file_sha256, write_json_atomic
from edge_deeplab.core.errors import EdgeDeeplabError

LOCK_NAME = ".lock"
COMPLETE_NAME = "complete.json"
ORIGIN_NAME = "origin.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _read_lock(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _holder_message(run: Path, lock: Path, held: dict, same_host: bool) -> str:
    where = "" if same_host else f" on {held.get('host')}"
    return (f"{run} is being written by {held.get('command', 'another command')} (pid "
            f"{held.get('pid')}{where}, since {held.get('started', '?')}); wait for it to finish, "
            f"or delete {lock} if that process is gone")


def require_unlocked(run_dir) -> None:
    """Refuses (one line naming the pid) when another live process holds ``run_dir``'s lock: the
    check a command makes before any work; :func:`run_lock` then takes the lock.

    Example:
        >>> import tempfile
        >>> require_unlocked(tempfile.mkdtemp())  # no lock: nothing to say
    """
    run = Path(run_dir)
    lock = run / LOCK_NAME
    if not lock.is_file():
        return
    held = _read_lock(lock)
    pid = int(held.get("pid") or 0)
    same_host = held.get("host") in (None, socket.gethostname())
    if pid and pid != os.getpid() and (not same_host or _alive(pid)):
        raise EdgeDeeplabError(_holder_message(run, lock, held, same_host))


@contextlib.contextmanager
def run_lock(run_dir, command: str) -> Iterator[Path]:
    """Holds ``run_dir/.lock`` while the block runs (the folder is created).

    Args:
        run_dir: the run folder.
        command: what holds it (named to a second writer), e.g. ``"train"``.

    Raises:
        EdgeDeeplabError: another live process holds the lock (one line with its pid).

    Example:
        >>> import tempfile
        >>> with run_lock(tempfile.mkdtemp(), "qat") as lock:
        ...     json.loads(lock.read_text())["command"]
        'qat'
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    lock = run / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
          "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = _read_lock(lock)
            pid = int(held.get("pid") or 0)
            same_host = held.get("host") in (None, me["host"])
            if pid and pid != me["pid"] and (not same_host or _alive(pid)):
                raise EdgeDeeplabError(_holder_message(run, lock, held, same_host)) from None
            print(f"note: {run}: taking over a stale lock of pid {pid or '?'} "
                  f"({held.get('command', '?')}, no longer running)", file=sys.stderr, flush=True)
            try:
                lock.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:  # pragma: no cover - three writers racing for one stale lock
        raise EdgeDeeplabError(f"{run}: could not take {lock}")
    try:
        yield lock
    finally:
        if _read_lock(lock).get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()


def mark_complete(run_dir, result: dict) -> Path:
    """Writes ``run_dir/complete.json`` (``result`` plus the time): the run's result is final.

    Args:
        run_dir: the run folder.
        result: what the marker records (steps, best mIoU, the model's digest).

    Example:
        >>> import tempfile
        >>> mark_complete(tempfile.mkdtemp(), {"final_step": 1}).name
        'complete.json'
    """
    return write_json_atomic(Path(run_dir) / COMPLETE_NAME,
                             dict(result, completed=time.strftime("%Y-%m-%dT%H:%M:%S")))


def read_complete(run_dir) -> Optional[dict]:
    """``run_dir/complete.json``'s content, or ``None`` when the run is not complete.

    Args:
        run_dir: the run folder.

    Example:
        >>> import tempfile
        >>> read_complete(tempfile.mkdtemp()) is None
        True
    """
    p = Path(run_dir) / COMPLETE_NAME
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def clear_complete(run_dir) -> None:
    """Removes the ``complete`` marker (the run is being continued or redone).

    Args:
        run_dir: the run folder.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp(); _ = mark_complete(d, {}); clear_complete(d); read_complete(d)
    """
    with contextlib.suppress(FileNotFoundError):
        (Path(run_dir) / COMPLETE_NAME).unlink()


def record_origin(derived_dir, source) -> dict:
    """Records in ``derived_dir/origin.json`` which file (and which bytes) it is built from.

    Args:
        derived_dir: the folder of the derived result (``RUN/qat``).
        source: the file it is built from (``RUN/model.keras``).

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp(); src = os.path.join(d, "m"); _ = open(src, "w").write("1")
        >>> record_origin(d, src)["sha256"][:8]
        '6b86b273'
    """
    rec = {"source": str(Path(source).resolve()), "sha256": file_sha256(source)}
    write_json_atomic(Path(derived_dir) / ORIGIN_NAME, rec)
    return rec


def stale_origin(derived_dir, source) -> Optional[str]:
    """Why ``derived_dir`` no longer matches ``source`` (one phrase), or ``None`` when it does
    (or records no origin: made before origins were recorded).

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp(); src = os.path.join(d, "m"); _ = open(src, "w").write("1")
        >>> _ = record_origin(d, src); stale_origin(d, src) is None
        True
        >>> _ = open(src, "w").write("2"); stale_origin(d, src)  # doctest: +ELLIPSIS
        '... changed since ... was built from it'
    """
    p = Path(derived_dir) / ORIGIN_NAME
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return f"{p} is unreadable"
    if not Path(source).is_file():
        return f"{source} is missing"
    if rec.get("sha256") != file_sha256(source):
        return f"{source} changed since {derived_dir} was built from it"
    return None


def set_aside(run_dir, keep=(LOCK_NAME,)) -> Optional[Path]:
    """Moves everything in ``run_dir`` (but ``keep`` and earlier ``previous-N`` folders) into a
    new ``run_dir/previous-N`` and returns it (``None`` when there was nothing to move).

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp()); _ = (run / "model.keras").write_text("old")
        >>> set_aside(run).name, sorted(p.name for p in run.iterdir())
        ('previous-1', ['previous-1'])
    """
    run = Path(run_dir)
    if not run.is_dir():
        return None
    names = [p for p in run.iterdir() if p.name not in keep and not p.name.startswith("previous-")]
    if not names:
        return None
    n = 1
    while (run / f"previous-{n}").exists():
        n += 1
    aside = run / f"previous-{n}"
    aside.mkdir()
    for p in names:
        os.replace(p, aside / p.name)
    return aside
