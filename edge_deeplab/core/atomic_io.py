"""Atomic file writes and friendly loading helpers shared by every stage.

Every artifact (a .tflite, a checkpoint, a report) is written to a temporary file next to its
destination and moved into place with :func:`os.replace`, so an interrupted or failed write never
leaves a partial file and never clobbers the previous good one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from edge_deeplab.core.errors import EdgeDeeplabError


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path beside ``dest``; on success it is moved onto ``dest``.

    Args:
        dest: final path.
        suffix: suffix of the temporary file (defaults to ``dest``'s, which some writers such as
            Keras' ``model.save`` need to pick a format).

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> with atomic_path(os.path.join(d, "x.txt")) as tmp:
        ...     _ = tmp.write_text("hi")
        >>> open(os.path.join(d, "x.txt")).read()
        'hi'
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = dest.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp creates 0600; give the artifact normal permissions
            apply_umask(tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def apply_umask(path: str | os.PathLike) -> None:
    """Gives a file made by :func:`tempfile.mkstemp` (mode 0600) the mode a plain ``open`` would
    have given it: ``0666`` less the user's umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_bytes_atomic(dest: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``dest`` atomically and returns the path."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(dest)


def write_text_atomic(dest: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``dest`` atomically and returns the path."""
    return write_bytes_atomic(dest, text.encode("utf-8"))


def write_json_atomic(dest: str | os.PathLike, obj) -> Path:
    """Writes ``obj`` as indented JSON to ``dest`` atomically and returns the path."""
    return write_text_atomic(dest, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(o):
    """``json.dumps(default=...)`` for numpy scalars/arrays and paths."""
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def check_writable(path: str | os.PathLike) -> Path:
    """Checks, before any work starts, that a file can be written at ``path``; returns it absolute.

    The nearest existing folder on the way to ``path`` must be a directory where a file can be
    created (probed with a temporary file; missing folders below it are created when the file is
    written), and ``path`` itself must not be a directory. Raises a one-line :class:`EdgeDeeplabError` naming the path otherwise.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> check_writable(os.path.join(d, "new", "report.json")).name
        'report.json'
    """
    p = Path(os.path.abspath(os.fspath(path)))
    if p.is_dir():
        raise EdgeDeeplabError(f"cannot write {path}: it is a directory")
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise EdgeDeeplabError(f"cannot write {path}: {folder} is not a directory")
    try:  # a real probe: permissions, read-only mounts and ACLs all answer here
        fd, probe = tempfile.mkstemp(prefix=".edge_deeplab_probe.", dir=folder)
    except OSError as e:
        raise EdgeDeeplabError(f"cannot write {path}: directory {folder} is not writable "
                               f"({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
    return p


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Returns ``Path(path)`` or raises a one-line error if it is missing or not a file."""
    p = Path(path)
    if not p.exists():
        raise EdgeDeeplabError(f"{what} not found: {p}")
    if not p.is_file():
        raise EdgeDeeplabError(f"{what} is not a file: {p}")
    return p
