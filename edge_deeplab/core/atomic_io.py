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


def check_writable(path: str | os.PathLike, what: str = "output", directory: bool = False) -> Path:
    """Raises a one-line error unless ``path`` can be written (before any long work starts).

    Returns ``path`` made absolute.

    ``path`` is a file to be created or replaced (``directory=True``: a folder to be created or
    written into). The nearest existing folder on the way must accept a new file: a temporary file
    is created and removed there, which catches read-only folders and file systems alike.

    Example:
        >>> import tempfile, os
        >>> check_writable(os.path.join(tempfile.mkdtemp(), "new", "x.json")).name
        'x.json'
    """
    p = Path(os.path.abspath(os.fspath(path)))
    if not directory and p.is_dir():
        raise EdgeDeeplabError(f"{what} {p} is a directory, not a file")
    if directory and p.exists() and not p.is_dir():
        raise EdgeDeeplabError(f"{what} {p} exists and is not a directory")
    folder = (p if directory else p.parent).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise EdgeDeeplabError(f"cannot write {what} {p}: {folder} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edge_deeplab_write_check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise EdgeDeeplabError(
            f"cannot write {what} {p}: {folder} is not writable ({e.strerror or e})") from None
    return p


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Returns ``Path(path)`` or raises a one-line error if it is missing or not a file."""
    p = Path(path)
    if not p.exists():
        raise EdgeDeeplabError(f"{what} not found: {p}")
    if not p.is_file():
        raise EdgeDeeplabError(f"{what} is not a file: {p}")
    return p


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks: the one content hash of the toolkit
    (QAT's record of its float model, a teacher's identity in the label cache, a bench row's model).

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x"); _ = open(p, "wb").write(b"abc")
        >>> file_sha256(p)[:12]
        'ba7816bf8f01'
    """
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
