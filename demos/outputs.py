"""Where the portrait demo writes: videos (atomically) and images."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

from demos import capture as capture_lib
from edge_deeplab.core.atomic_io import apply_umask
from edge_deeplab.core.errors import EdgeDeeplabError


class VideoOutput:
    """Writes frames to a video atomically (``mp4v`` for .mp4/.mov/.m4v/.mkv, ``MJPG`` for .avi).

    Frames go to a hidden temporary file beside ``path`` (``.NAME.XXXX.tmp.mp4``); :meth:`finish`
    moves it onto ``path`` (with the user's umask), :meth:`abort` deletes it, so an interrupted or
    failed run leaves an earlier ``path`` exactly as it was.

    Args:
        path: the video to write; it appears only once :meth:`finish` succeeds.
        fps: frame rate to store; ``None`` measures it from the timestamps of the first
            ``measure_frames`` frames (a live camera, whose real processed rate is what plays back
            at the right speed).
        size_wh: ``(width, height)``; other frame sizes are resized to it.
    """

    def __init__(self, path, fps: Optional[float], size_wh, measure_frames: int = 15):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in (".mp4", ".avi", ".mov", ".m4v", ".mkv"):
            raise EdgeDeeplabError(
                f"video output must end in .mp4, .avi, .mov, .m4v or .mkv, got {self.path.name}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=f".tmp{ext}", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.fourcc = cv2.VideoWriter_fourcc(*("MJPG" if ext == ".avi" else "mp4v"))
        self.size = (int(size_wh[0]), int(size_wh[1]))
        self.fps = float(fps) if fps else None
        self.measure_frames = max(2, int(measure_frames))
        self.writer = None
        self._pending: List[tuple] = []
        self.frames = 0
        if self.fps:
            self._open(self.fps)

    def _open(self, fps: float) -> None:
        self.fps = float(min(120.0, max(1.0, fps)))
        self.writer = cv2.VideoWriter(str(self.tmp), self.fourcc, self.fps, self.size)
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise EdgeDeeplabError(f"cannot write video {self.path} (codec unavailable?)")
        for img, _ in self._pending:
            self.writer.write(img)
        self._pending = []

    def _measured_fps(self) -> float:
        ts = [t for _, t in self._pending]
        if len(ts) < 2 or ts[-1] <= ts[0]:
            return 30.0
        return (len(ts) - 1) / (ts[-1] - ts[0])

    def write(self, img: np.ndarray, timestamp: Optional[float] = None) -> None:
        if (img.shape[1], img.shape[0]) != self.size:
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        self.frames += 1
        if self.writer is None:
            self._pending.append((img.copy(), time.perf_counter() if timestamp is None else timestamp))
            if len(self._pending) >= self.measure_frames:
                self._open(self._measured_fps())
            return
        self.writer.write(img)

    def finish(self) -> Path:
        if self.frames == 0:
            self.abort()
            raise EdgeDeeplabError(f"no frames to write to {self.path}")
        if self.writer is None:
            self._open(self._measured_fps())
        self.writer.release()
        apply_umask(self.tmp)  # mkstemp made it 0600; the video gets the user's usual mode
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            if self.writer is not None:
                self.writer.release()
        finally:
            self.tmp.unlink(missing_ok=True)


class FolderOutput:
    """Writes a run's images into a hidden temporary folder beside ``path``; swaps them in at the end.

    :meth:`write` puts ``NAME`` into ``.PATH.XXXX.tmp/`` (a sibling of ``path``); :meth:`finish`
    creates ``path`` if needed and moves every image onto ``path/NAME`` (``os.replace``, one rename
    each, so a reader never sees half an image), then deletes the temporary folder; :meth:`abort`
    deletes it. An interrupted or failed run therefore leaves an earlier ``path`` exactly as it was
    (other files in ``path`` are never touched) and no temporary folder.

    Args:
        path: the output folder (need not exist yet).

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()) / "out"
        >>> o = FolderOutput(d); _ = o.write("a.png", np.zeros((4, 4, 3), np.uint8))
        >>> d.exists(), [p.name for p in o.finish()], sorted(p.name for p in d.parent.iterdir())
        (False, ['a.png'], ['out'])
    """

    def __init__(self, path):
        import tempfile

        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise EdgeDeeplabError(f"output must be a directory here, and {self.path} is a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        self.names: List[str] = []

    def write(self, name: str, img: np.ndarray) -> Path:
        """Writes ``img`` as ``name`` (its extension picks the format) into the temporary folder."""
        p = write_image(self.tmp / name, img)
        if name not in self.names:
            self.names.append(name)
        return p

    def finish(self) -> List[Path]:
        """Moves the images into ``path``; returns their final paths."""
        import shutil

        self.path.mkdir(parents=True, exist_ok=True)
        done = []
        for name in self.names:
            os.replace(self.tmp / name, self.path / name)
            done.append(self.path / name)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return done

    def abort(self) -> None:
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


def write_image(path, img: np.ndarray) -> Path:
    """Encodes ``img`` by the extension of ``path`` and writes it atomically."""
    from edge_deeplab.core.atomic_io import write_bytes_atomic

    path = Path(path)
    ext = path.suffix.lower() or ".png"
    if ext not in capture_lib.IMAGE_EXTS:
        raise EdgeDeeplabError(f"image output must end in one of {', '.join(capture_lib.IMAGE_EXTS)}, got {path.name}")
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise EdgeDeeplabError(f"cannot encode image {path}")
    return write_bytes_atomic(path, buf.tobytes())


def image_output_path(output: Optional[Path], source_kind: str, frame_name: str,
                      single_default_ext: str = ".png") -> Optional[Path]:
    """Where the result for frame ``frame_name`` goes: ``output`` itself for one image, else
    ``output/<stem>_portrait<ext>``."""
    if output is None:
        return None
    if source_kind == "image" and not (output.is_dir() or output.suffix == ""):
        return output
    stem = Path(frame_name).stem
    ext = Path(frame_name).suffix.lower() if Path(frame_name).suffix.lower() in capture_lib.IMAGE_EXTS else single_default_ext
    return output / f"{stem}_portrait{ext}"
