"""The labelling pass: run a teacher once over every frame and cache its soft labels.

:func:`label_sources` walks the sources in order, runs the :class:`~edge_deeplab.runtime.teacher.Teacher`
on each frame, maps its classes to the student's (:func:`~edge_deeplab.runtime.teacher.class_map`) and
stores frame, hard mask and probabilities in a :class:`~edge_deeplab.data.soft_labels.SoftLabelStore`.
Frames already in the store are not labelled again (a rerun or ``--resume`` reuses them; an
interrupted pass continues); frames that do not decode are skipped and counted per source. The
held-out part of each source is its last ``val_fraction`` (time order), or whole ``val_sources``.

Example:
    >>> from edge_deeplab.runtime.teacher import open_teacher, parse_range     # doctest: +SKIP
    >>> from edge_deeplab.data.frame_sources import resolve_sources          # doctest: +SKIP
    >>> t = open_teacher("selfie.tflite", normalization=parse_range("0,1"))  # doctest: +SKIP
    >>> m = label_sources(t, resolve_sources(["clip.mp4"]), ["background", "person"],
    ...                   "run/labels", val_fraction=0.3)                    # doctest: +SKIP
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

import numpy as np

from edge_deeplab.core.progress import LineProgress, is_terminal
from edge_deeplab.data.frame_sources import FrameSource, held_out_indices
from edge_deeplab.data.soft_labels import SoftLabelStore

#: Longer side of stored frames (larger frames are shrunk; the student trains far below it).
MAX_SIDE = 640


def _fit(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    import cv2

    s = max_side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def label_sources(teacher, sources: Sequence[FrameSource], classes: Sequence[str], root, *,
                  val_fraction: float = 0.2, val_sources: Sequence[FrameSource] = (),
                  max_side: int = MAX_SIDE, limit: Optional[int] = None, verbose: int = 1) -> dict:
    """Labels every frame of ``sources`` (and ``val_sources``) into the store at ``root``.

    Args:
        teacher: an opened teacher.
        sources: training sources; with no ``val_sources`` the last ``val_fraction`` of each is held out.
        classes: the student classes (teacher classes map to them by name).
        root: the store folder (``RUN/labels``).
        val_fraction: the held-out share at the end of each source (0: none).
        val_sources: explicit held-out sources (then ``sources`` are all training).
        max_side: frames are stored with at most this longer side.
        limit: stop after labelling this many new frames (the pass stays incomplete; for tests of
            interruption and for a budget).
        verbose: 1 for a progress line on stderr.

    Returns:
        The store's manifest (``complete`` True unless ``limit`` stopped it).
    """
    from edge_deeplab.runtime.teacher import class_map

    mapping = class_map(teacher.labels, classes)
    store = SoftLabelStore(root)
    store.begin(teacher.describe(), classes, stride=sources[0].stride if sources else 1)
    plan = [(s, "train") for s in sources] + [(s, "val") for s in val_sources]
    counts = {id(s): s.count() for s, _ in plan}
    total = sum(counts.values())
    done = sum(1 for _ in store.manifest["entries"])
    bar = LineProgress(total, "labelling", stream=sys.stderr, unit="frame",
                       in_place=is_terminal(sys.stderr)) if verbose else None
    new = 0
    try:
        for src, role in plan:
            held = set(held_out_indices(counts[id(src)], val_fraction)) \
                if role == "train" and not val_sources else set()
            for index, rgb in src.frames():
                stem = f"{src.key}_{index:06d}"
                if store.has(stem):
                    continue
                if limit is not None and new >= limit:
                    store.save()
                    return store.manifest
                if rgb is None:
                    store.count_skipped(str(src.path), index)
                else:
                    rgb = _fit(rgb, max_side)
                    tp = teacher.probabilities(rgb)
                    probs = np.stack([tp[..., idx].sum(-1) for idx in mapping], axis=-1)
                    split = "val" if role == "val" or index in held else "train"
                    store.add(stem, rgb, probs, source=str(src.path), frame=index, split=split)
                    new += 1
                done += 1
                if bar is not None:  # a frame count from the container is an estimate: clamp
                    bar.update(min(done, total))
    finally:
        if bar is not None:  # stopped early (limit, Ctrl-C, an error): end the line first
            bar.close()
    manifest = store.finish()
    if verbose:
        skipped = sum(len(v) for v in manifest["skipped"].values())
        print(f"labels: {len(store.stems('train'))} training and {len(store.stems('val'))} held-out "
              f"frames ({new} new); {skipped} frame(s) did not decode and were skipped",
              file=sys.stderr, flush=True)
    return manifest
