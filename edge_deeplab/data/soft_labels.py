"""The soft-label store: teacher probabilities per frame, cached once, readable as a folder dataset.

Layout of ``RUN/labels/`` (also a valid ``folder`` dataset, so ``qat RUN``, ``eval`` and ``train
--dataset folder`` read it with the teacher's hard labels)::

    images/<stem>.png      the frame (RGB, longer side capped at the labelling size)
    masks/<stem>.png       the teacher's hard label (argmax over the mapped classes)
    soft/<stem>.npy        the teacher's probabilities over the mapped classes, uint8 (p x 255)
    labels.txt             the mapped (student) class names
    train.txt, val.txt     stems of each split (written when the pass is complete)
    manifest.json          teacher (path, SHA-256, labels, kind), classes, stride, per-frame entries
                           {stem: {source, frame, split}}, undecodable frames per source, complete

Entries enter the manifest only after their three files are written, so an interrupted labelling
pass continues where it stopped; a manifest from another teacher or class set is refused.

Example:
    >>> import tempfile, numpy as np
    >>> s = SoftLabelStore(tempfile.mkdtemp())
    >>> _ = s.begin({"sha256": "ab", "labels": ["bg", "person"]}, ["background", "person"], stride=1)
    >>> probs = np.zeros((4, 4, 2), np.float32); probs[..., 1] = 1.0
    >>> s.add("v_000000", np.zeros((4, 4, 3), np.uint8), probs, source="v.mp4", frame=0, split="train")
    >>> _ = s.finish(); s.stems("train"), s.read_soft("v_000000")[0, 0].tolist()
    (['v_000000'], [0, 255])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edge_deeplab.core.atomic_io import atomic_path, write_json_atomic, write_text_atomic
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import read_image_rgb

MANIFEST = "manifest.json"
FORMAT = "edge_deeplab/soft_labels/1"
SPLITS = ("train", "val")


class SoftLabelStore:
    """Reads and writes one ``labels/`` folder (see the module docstring).

    Args:
        root: the folder (created on :meth:`begin`).
        save_every: entries between manifest writes (what an interruption can lose at most).
    """

    def __init__(self, root, save_every: int = 16):
        self.root = Path(root)
        self.save_every = int(save_every)
        self.manifest: Optional[dict] = None
        self._pending = 0

    # ------------------------------------------------------------------------------ reading
    def load(self) -> Optional[dict]:
        """The manifest, or None when there is none yet."""
        p = self.root / MANIFEST
        if not p.is_file():
            return None
        try:
            m = json.loads(p.read_text())
        except ValueError:
            raise EdgeDeeplabError(f"{p} is damaged (not JSON); remove {self.root} to relabel") from None
        if m.get("format") != FORMAT:
            raise EdgeDeeplabError(f"{p} is not a soft-label manifest ({FORMAT})")
        self.manifest = m
        return m

    @property
    def complete(self) -> bool:
        return bool(self.manifest and self.manifest.get("complete"))

    def stems(self, split: str) -> List[str]:
        """Stems of ``split`` in labelling order (source by source, frame by frame)."""
        entries = (self.manifest or {}).get("entries", {})
        return [k for k, e in entries.items() if e["split"] == split]

    def entry(self, stem: str) -> dict:
        return self.manifest["entries"][stem]

    def read_image(self, stem: str) -> np.ndarray:
        return read_image_rgb(self.root / "images" / f"{stem}.png")

    def read_soft(self, stem: str) -> np.ndarray:
        """uint8 ``(H, W, C)`` probabilities x 255 over the mapped classes."""
        return np.load(self.root / "soft" / f"{stem}.npy")

    # ------------------------------------------------------------------------------ writing
    def begin(self, teacher: dict, classes: Sequence[str], stride: int) -> dict:
        """Opens the store for a labelling pass; continues a matching one, refuses a foreign one.

        Args:
            teacher: ``{"sha256", "labels", ...}`` of the teacher (its hash decides reuse).
            classes: the mapped (student) class names.
            stride: the video frame stride (part of what the labels mean).
        """
        old = self.load()
        want = {"teacher_sha256": teacher["sha256"], "classes": list(classes), "stride": int(stride)}
        if old is not None:
            have = {k: old.get(k) for k in want}
            if have != want:
                diff = ", ".join(f"{k} {have[k]!r} (now {want[k]!r})" for k in want if have[k] != want[k])
                raise EdgeDeeplabError(
                    f"{self.root} holds labels of another teacher or class set: {diff}; "
                    f"choose a new --out")
            return old
        for sub in ("images", "masks", "soft"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.manifest = dict(format=FORMAT, teacher=teacher, complete=False, entries={},
                             skipped={}, **want)
        write_text_atomic(self.root / "labels.txt", "\n".join(classes) + "\n")
        self.save()
        return self.manifest

    def has(self, stem: str) -> bool:
        return stem in (self.manifest or {}).get("entries", {})

    def add(self, stem: str, image: np.ndarray, probs: np.ndarray, *, source: str, frame: int,
            split: str) -> None:
        """Stores one labelled frame (``probs`` float (H, W, C) in [0, 1], at the image's size)."""
        from PIL import Image

        from edge_deeplab.data.masks import write_index_png

        if split not in SPLITS:
            raise EdgeDeeplabError(f"unknown split {split!r}")
        with atomic_path(self.root / "images" / f"{stem}.png") as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
        write_index_png(self.root / "masks" / f"{stem}.png",
                        np.argmax(probs, axis=-1).astype(np.uint8))
        q = np.clip(np.rint(probs * 255.0), 0, 255).astype(np.uint8)
        with atomic_path(self.root / "soft" / f"{stem}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, q)
        self.manifest["entries"][stem] = {"source": source, "frame": int(frame), "split": split}
        self._pending += 1
        if self._pending >= self.save_every:
            self.save()

    def count_skipped(self, source: str, frame: int) -> None:
        """Records that ``frame`` of ``source`` did not decode."""
        skipped: Dict[str, list] = self.manifest["skipped"]
        frames = skipped.setdefault(source, [])
        if frame not in frames:
            frames.append(int(frame))

    def finish(self) -> dict:
        """Writes the split files and marks the pass complete."""
        for split in SPLITS:
            write_text_atomic(self.root / f"{split}.txt", "".join(f"{s}\n" for s in self.stems(split)))
        self.manifest["complete"] = True
        self.save()
        return self.manifest

    def save(self) -> None:
        write_json_atomic(self.root / MANIFEST, self.manifest)
        self._pending = 0
