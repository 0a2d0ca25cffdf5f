"""One output discipline for every command: declare the outputs, check them all before any work.

A command lists what it reads (:class:`Input`: a model file, a run or dataset folder) and what it
writes (:class:`Output`: a file with its suffixes, or a folder), then calls :func:`check_outputs`
once, before anything slow. Paths are compared after resolving symlinks (a link to the model is the
model), and the first problem is refused in one line (exit 2):

* an output that is an input, or lies inside an input folder (a dataset, a run, a model folder),
  or a folder output that holds an input;
* two outputs naming the same path;
* a folder where a file is needed, or a file where a folder is needed; a symlink loop;
* a place that cannot be written (read-only folder, ``/proc``);
* a file output with the wrong suffix for its format (``--json`` must end in ``.json``).

File outputs are then written with :func:`edge_deeplab.core.atomic_io.atomic_path`; folder
outputs with :func:`atomic_dir`, which fills a temporary sibling and swaps it in only when it is
complete, so an interrupted command leaves the earlier folder exactly as it was.

Example:
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> model = os.path.join(d, "m.tflite"); _ = open(model, "wb").write(b"x")
    >>> check_outputs([Output(os.path.join(d, "r.json"), "--json", suffixes=(".json",))],
    ...               [Input(model, "model")])[0].name
    'r.json'
    >>> check_outputs([Output(model, "--json")], [Input(model, "model")])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edge_deeplab.core.errors.EdgeDeeplabError: --json ... is the model ...: it would be overwritten; choose another path
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from edge_deeplab.core.atomic_io import check_writable
from edge_deeplab.core.errors import EdgeDeeplabError


@dataclass(frozen=True)
class Input:
    """Something a command reads.

    Args:
        path: the file or folder (``None``: not used this time, ignored).
        what: how the message names it (``"model"``, ``"dataset"``, ``"run"``).
    """

    path: Optional[os.PathLike | str]
    what: str


@dataclass(frozen=True)
class Output:
    """Something a command writes.

    Args:
        path: the file or folder (``None``: not asked for, ignored).
        flag: how the message names it (``"--json"``, ``"--out"``).
        folder: a folder output (written with :func:`atomic_dir`) rather than a file.
        suffixes: accepted file suffixes (lower case, with the dot); empty: any.
    """

    path: Optional[os.PathLike | str]
    flag: str
    folder: bool = False
    suffixes: Sequence[str] = ()


def resolved(path) -> Path:
    """``path`` absolute with every symlink resolved; a symlink loop is a one-line error.

    Example:
        >>> resolved("/").as_posix()
        '/'
    """
    p = Path(os.path.abspath(os.fspath(path)))
    try:
        return p.resolve(strict=False)
    except (RuntimeError, OSError) as e:  # Python < 3.13 raises RuntimeError on a loop
        raise EdgeDeeplabError(f"{p} cannot be resolved (a symlink loop?): {e}") from None


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_outputs(outputs: Sequence[Output], inputs: Sequence[Input] = ()) -> List[Path]:
    """Checks every output against every input and the file system; returns the resolved outputs.

    Call it before any slow work. Outputs and inputs whose ``path`` is ``None`` are skipped (and
    their place in the returned list is ``None``).

    Args:
        outputs: what the command will write.
        inputs: what it reads.

    Raises:
        EdgeDeeplabError: one line naming the output and the problem (the CLI exits 2).

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> check_outputs([Output(os.path.join(d, "pred"), "--save-predictions", folder=True)],
        ...               [Input(d, "dataset")])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        edge_deeplab.core.errors.EdgeDeeplabError: --save-predictions ... lies inside the dataset ...
    """
    ins = [(resolved(i.path), i.what, Path(i.path)) for i in inputs if i.path is not None]
    seen: dict = {}
    result: List[Path] = []
    for o in outputs:
        if o.path is None:
            result.append(None)
            continue
        shown = Path(o.path)
        if os.path.islink(shown) and not os.path.exists(shown):
            # a dangling link is writable through; a loop is not
            try:
                os.stat(shown)
            except OSError as e:
                if e.errno == 40:  # ELOOP
                    raise EdgeDeeplabError(f"{o.flag} {shown} is a symlink loop") from None
        real = resolved(shown)
        if o.folder and real.exists() and not real.is_dir():
            raise EdgeDeeplabError(f"{o.flag} {shown} exists and is not a directory")
        if not o.folder and real.is_dir():
            raise EdgeDeeplabError(f"{o.flag} {shown} is a directory, not a file")
        if o.suffixes and not o.folder and real.suffix.lower() not in o.suffixes \
                and shown.suffix.lower() not in o.suffixes:
            raise EdgeDeeplabError(f"{o.flag} must end in {' or '.join(o.suffixes)}, got {shown}")
        if real in seen:
            raise EdgeDeeplabError(f"{seen[real]} and {o.flag} both name {shown}")
        seen[real] = o.flag
        for rin, what, given in ins:
            if real == rin:
                raise EdgeDeeplabError(f"{o.flag} {shown} is the {what} {given}: it would be "
                                       f"overwritten; choose another path")
            if rin.is_dir() and _within(real, rin):
                raise EdgeDeeplabError(f"{o.flag} {shown} lies inside the {what} {given}; write "
                                       f"it somewhere else")
            if o.folder and _within(rin, real):
                raise EdgeDeeplabError(f"{o.flag} {shown} holds the {what} {given}, which it "
                                       f"would replace; choose another folder")
        check_writable(real, o.flag, directory=o.folder)
        result.append(real)
    return result


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary folder beside ``dest``; on success it becomes ``dest``.

    An earlier ``dest`` is kept untouched until the new folder is complete, then replaced in two
    renames (the old one is moved aside, the new one in, the old one deleted). On an error or
    Ctrl-C the temporary folder is removed and ``dest`` is as it was.

    Args:
        dest: the final folder.

    Example:
        >>> import tempfile, os
        >>> d = os.path.join(tempfile.mkdtemp(), "out")
        >>> with atomic_dir(d) as tmp:
        ...     _ = (tmp / "a.txt").write_text("1")
        >>> sorted(os.listdir(d))
        ['a.txt']
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700
    try:
        yield tmp
        old = None
        if dest.exists() or dest.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
