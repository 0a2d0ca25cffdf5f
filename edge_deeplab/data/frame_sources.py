"""Frame sources for distillation: image folders, single images, videos (frames at a stride), globs.

A *source* is one thing the user named (after glob expansion): a folder of images, one image or one
video. :func:`resolve_sources` turns command-line strings into :class:`FrameSource` objects (one-line
errors for paths that do not exist, globs that match nothing, files of unknown type);
:meth:`FrameSource.frames` yields ``(frame_index, rgb_or_None)``, ``None`` for a frame that does not
decode (the caller counts it); :func:`held_out_indices` says which frames are held out: the *last*
part of each source in order (time, for a video), never frames scattered among training neighbours.

Example:
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp()
    >>> for i in range(3):
    ...     Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(f"{d}/f{i}.png")
    >>> src, = resolve_sources([d])
    >>> src.kind, src.count(), [i for i, _ in src.frames()]
    ('images', 3, [0, 1, 2])
    >>> held_out_indices(10, 0.2)
    [8, 9]
"""

from __future__ import annotations

import glob
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import read_image_rgb
from edge_deeplab.data.masks import IMAGE_EXTENSIONS

#: File endings read as videos (through OpenCV).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
SOURCE_KINDS = ("images", "image", "video")


@dataclass(frozen=True)
class FrameSource:
    """One source of frames.

    Args:
        path: the folder, image or video.
        kind: ``images`` (a folder), ``image`` or ``video``.
        stride: for videos, every ``stride``-th frame is used (frame indices count decoded frames).
    """

    path: Path
    kind: str
    stride: int = 1

    @property
    def key(self) -> str:
        """A file-name-safe, unique name: the source's stem plus a short hash of its full path."""
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", self.path.stem or self.path.name)[:40] or "src"
        return f"{stem}-{hashlib.sha256(str(self.path).encode()).hexdigest()[:8]}"

    def files(self) -> List[Path]:
        """The image files of an ``images`` source, sorted by name (one for ``image``)."""
        if self.kind == "image":
            return [self.path]
        if self.kind != "images":
            return []
        return sorted(p for p in self.path.iterdir()
                      if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

    def count(self) -> int:
        """How many frames the source names (before decoding: undecodable ones included)."""
        if self.kind != "video":
            return len(self.files())
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        try:
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        finally:
            cap.release()
        return max(0, math.ceil(n / self.stride))

    def frames(self, start: int = 0) -> Iterator[Tuple[int, Optional[np.ndarray]]]:
        """``(frame_index, uint8 RGB (H, W, 3) or None)`` from ``start`` on; ``None``: did not decode.

        For videos the index counts used frames (decoded frame ``index * stride``).
        """
        if self.kind != "video":
            for i, f in enumerate(self.files()):
                if i < start:
                    continue
                try:
                    yield i, read_image_rgb(f)
                except EdgeDeeplabError:
                    yield i, None
            return
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        try:
            if not cap.isOpened():
                return
            raw = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                if raw % self.stride == 0:
                    i = raw // self.stride
                    if i >= start:
                        yield i, (None if bgr is None or bgr.size == 0 else
                                  np.ascontiguousarray(bgr[..., ::-1]))
                raw += 1
        finally:
            cap.release()

    def first_frame(self) -> Optional[np.ndarray]:
        """The first frame that decodes, or None when none does."""
        for _, rgb in self.frames():
            if rgb is not None:
                return rgb
        return None


def _kind_of(p: Path) -> Optional[str]:
    if p.is_dir():
        return "images"
    ext = p.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return None


def resolve_sources(specs: Sequence[str], stride: int = 1) -> List[FrameSource]:
    """Command-line source strings (folders, images, videos, globs) -> sources, in the given order.

    Args:
        specs: paths or glob patterns (``clips/*.mp4``).
        stride: frame stride for videos (>= 1).

    Raises:
        EdgeDeeplabError: a path that does not exist, a glob that matches nothing, a file that is
            neither an image nor a video, a folder without images, a source named twice.

    Example:
        >>> resolve_sources(["/nonexistent.mp4"])
        Traceback (most recent call last):
        ...
        edge_deeplab.core.errors.EdgeDeeplabError: source not found: /nonexistent.mp4
    """
    if stride < 1:
        raise EdgeDeeplabError(f"frame stride must be >= 1, got {stride}")
    out: List[FrameSource] = []
    for spec in specs:
        if any(c in spec for c in "*?["):
            paths = [Path(p) for p in sorted(glob.glob(spec))]
            paths = [p for p in paths if _kind_of(p) is not None]
            if not paths:
                raise EdgeDeeplabError(f"source pattern {spec!r} matches no image, video or folder")
        else:
            p = Path(spec)
            if not p.exists():
                raise EdgeDeeplabError(f"source not found: {spec}")
            paths = [p]
        for p in paths:
            kind = _kind_of(p)
            if kind is None:
                raise EdgeDeeplabError(
                    f"source {p} is neither an image ({', '.join(IMAGE_EXTENSIONS)}) nor a video "
                    f"({', '.join(VIDEO_EXTENSIONS)}) nor a folder")
            src = FrameSource(p.resolve(), kind, stride)
            if kind == "images" and not src.files():
                raise EdgeDeeplabError(f"source folder {p} holds no images")
            if any(s.path == src.path for s in out):
                raise EdgeDeeplabError(f"source {p} is named twice")
            out.append(src)
    return out


def require_decodable(sources: Sequence[FrameSource]) -> None:
    """Raises a one-line error naming the first source of which no frame decodes."""
    for s in sources:
        if s.first_frame() is None:
            raise EdgeDeeplabError(f"no frame of source {s.path} decodes ({s.kind})")


def held_out_indices(num_frames: int, fraction: float) -> List[int]:
    """The held-out frame indices of a source of ``num_frames``: its last ``ceil(fraction x n)``.

    Held-out frames are one block at the end (for a video: the last part in time), so no held-out
    frame sits between training frames. A source of one frame is never split.

    Example:
        >>> held_out_indices(5, 0.3), held_out_indices(1, 0.5), held_out_indices(4, 0.0)
        ([3, 4], [], [])
    """
    if not 0.0 <= fraction < 1.0:
        raise EdgeDeeplabError(f"held-out fraction must be in [0, 1), got {fraction}")
    if num_frames < 2 or fraction == 0:
        return []
    k = min(num_frames - 1, math.ceil(fraction * num_frames))
    return list(range(num_frames - k, num_frames))
