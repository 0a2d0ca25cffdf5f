"""The QAT folder's transitions (``RUN/qat``): QAT remembers the float model it was built from.

A QAT model fine-tuned from ``RUN/model.keras`` is only valid for those weights. Before any work,
:func:`prepare_qat_dir` (called at the start of :func:`edge_deeplab.training.qat.run_qat`):

* ``resume``: refuses when ``RUN/model.keras`` changed since the QAT started (its SHA-256 is in
  ``RUN/qat/origin.json``; see :mod:`edge_deeplab.core.run_state`);
* a fresh start over an earlier QAT built from other weights, or over a finished QAT model whose
  checkpoints are gone: moves the old one into ``RUN/qat/previous-N`` with a note, then redoes it;
* a fresh start over current checkpoints: refused (``--resume`` continues them);
* then records the float model's digest for the QAT about to run.

``export RUN --variant qat-int8`` and ``eval RUN --qat`` refuse a stale QAT model the same way
(:func:`edge_deeplab.app.commands.common.require_current_qat`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.run_state import record_origin, set_aside, stale_origin


def prepare_qat_dir(run_dir, *, resume: bool) -> Path:
    """Checks (and on a fresh start prepares) ``RUN/qat`` for a QAT run; returns it.

    Args:
        run_dir: the trained run folder (``RUN/model.keras``).
        resume: continue the QAT checkpoints.

    Raises:
        EdgeDeeplabError: resuming a QAT built from other float weights; a fresh start over
            current QAT checkpoints.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp()); _ = (run / "model.keras").write_bytes(b"weights")
        >>> prepare_qat_dir(run, resume=False).name, (run / "qat" / "origin.json").is_file()
        ('qat', True)
    """
    from edge_deeplab.training.train import has_checkpoint_files

    run = Path(run_dir)
    qdir, source = run / "qat", run / "model.keras"
    stale = stale_origin(qdir, source) if source.is_file() else None
    if resume:
        if stale:
            raise EdgeDeeplabError(
                f"--resume: {stale}; the QAT checkpoints belong to other float weights: run "
                f"`edge-deeplab qat {run}` without --resume to redo it (the old QAT is kept aside)")
        return qdir
    old_model = any(qdir.glob("model.*")) if qdir.is_dir() else False
    if has_checkpoint_files(qdir / "checkpoints") and not stale:
        raise EdgeDeeplabError(f"{qdir} already has QAT checkpoints; pass --resume to continue "
                               f"or delete {qdir}")
    if stale or old_model:
        aside = set_aside(qdir)
        why = stale or f"{qdir} held a finished QAT model"
        print(f"note: {why}; redoing QAT (the old one is kept in {aside})", file=sys.stderr,
              flush=True)
    qdir.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        record_origin(qdir, source)
    return qdir
