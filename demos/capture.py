"""Frame sources for the portrait demo: camera, video file, single image, folder of images.

A camera is read on its own thread that keeps only the newest frame: when inference is slower than
the camera, stale frames are dropped (and counted) instead of piling up, so the picture never lags
behind reality. A video file is decoded on its own thread too, but into a small bounded queue with
no dropping, so headless runs process every frame and write the input's frame count.

Errors are one-line :class:`~edge_deeplab.core.errors.EdgeDeeplabError`: a camera index that does not
exist or cannot be opened, a camera that stops delivering frames (disconnected), a missing or
unreadable file, a folder without images. The end of a video is simply the end of iteration.

Example:
    >>> import numpy as np, tempfile, os, cv2
    >>> d = tempfile.mkdtemp(); _ = cv2.imwrite(os.path.join(d, "a.png"), np.zeros((8, 8, 3), np.uint8))
    >>> src = open_source(d)
    >>> src.kind, [f.name for f in src]
    ('folder', ['a.png'])
"""

from __future__ import annotations

import dataclasses
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional, Union

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")       # no V4L/FFmpeg warnings for missing cameras
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")    # quiet FFmpeg on corrupt files

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edge_deeplab.core.errors import EdgeDeeplabError  # noqa: E402
from edge_deeplab.core.imaging import read_image_bgr  # noqa: E402

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".gif")


@dataclasses.dataclass
class Frame:
    """One captured frame.

    Attributes:
        index: 0-based index among the frames delivered.
        image: ``HxWx3`` BGR uint8.
        name: file name for image/folder sources (``frame_000012`` otherwise).
        timestamp: ``time.perf_counter()`` when it was captured.
        wait_s: how long the consumer waited for it (capture stage time).
    """

    index: int
    image: np.ndarray
    name: str
    timestamp: float
    wait_s: float = 0.0


def _quiet_cv():
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except Exception:  # pragma: no cover - very old OpenCV
        pass


class FrameSource:
    """Base class: iterate to get :class:`Frame` objects; :meth:`close` when done."""

    kind = "source"
    is_live = False

    def __init__(self, name: str):
        self.name = name
        self.fps: Optional[float] = None
        self.frame_count: Optional[int] = None
        self.dropped = 0

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ImageSource(FrameSource):
    """One image file or a folder of images (sorted by name).

    A folder skips images that cannot be read (recorded in :attr:`skipped` as ``(name, reason)``)
    so one corrupt file does not end the run halfway; a single image raises.
    """

    def __init__(self, paths: List[Path], name: str, kind: str):
        super().__init__(name)
        self.kind = kind
        self.paths = list(paths)
        self.frame_count = len(self.paths)
        self.skipped: List[tuple] = []

    def __iter__(self) -> Iterator[Frame]:
        self.skipped = []
        for i, p in enumerate(self.paths):
            t0 = time.perf_counter()
            try:
                img = read_image_bgr(p, "image")
            except EdgeDeeplabError as e:
                if self.kind != "folder":
                    raise
                self.skipped.append((p.name, str(e)))
                continue
            t1 = time.perf_counter()
            yield Frame(i, img, p.name, t1, t1 - t0)


class ThreadedCapture(FrameSource):
    """A ``cv2.VideoCapture`` read on a background thread.

    Args:
        cap: an opened capture.
        name: display name (``camera 0`` or the file path).
        live: ``True`` for cameras: keep only the newest frame, drop stale ones (counted in
            :attr:`dropped`). ``False`` for files: bounded queue, nothing dropped.
        first_frame: a frame already read while probing the source (delivered first).
        stall_timeout: a live source that delivers nothing for this long is reported as
            disconnected.
    """

    def __init__(self, cap, name: str, live: bool, first_frame: Optional[np.ndarray] = None,
                 stall_timeout: float = 3.0, queue_size: int = 4):
        super().__init__(name)
        self.kind = "camera" if live else "video"
        self.is_live = live
        self._cap = cap
        self._stall_timeout = float(stall_timeout)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = n if (n > 0 and not live) else None
        self._q: "queue.Queue" = queue.Queue(maxsize=1 if live else queue_size)
        self._cond = threading.Condition()
        self._latest: Optional[tuple] = None
        self._seq = 0
        self._eof = False
        self._error: Optional[str] = None
        self._stop = threading.Event()
        self._first = first_frame
        self._thread = threading.Thread(target=self._reader, name=f"capture:{name}", daemon=True)
        self._thread.start()

    # -- producer ------------------------------------------------------------------------------
    def _reader(self):
        last_ok = time.perf_counter()
        try:
            if self._first is not None:
                self._publish(self._first)
                self._first = None
            while not self._stop.is_set():
                ok, img = self._cap.read()
                now = time.perf_counter()
                if not ok or img is None:
                    if not self.is_live:
                        break  # end of file
                    if now - last_ok > self._stall_timeout:
                        self._error = (f"{self.name} disconnected or stalled "
                                       f"(no frame for {self._stall_timeout:.1f} s)")
                        break
                    time.sleep(0.01)
                    continue
                last_ok = now
                self._publish(img)
        except Exception as e:  # noqa: BLE001 - surfaced to the consumer as one line
            self._error = f"reading {self.name} failed: {type(e).__name__}: {e}"
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()
            if not self.is_live:
                self._put_file(None)

    def _publish(self, img):
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        if self.is_live:
            with self._cond:
                if self._latest is not None:
                    self.dropped += 1  # the consumer never saw the previous one
                self._seq += 1
                self._latest = (self._seq, img, time.perf_counter())
                self._cond.notify_all()
        else:
            self._put_file((img, time.perf_counter()))

    def _put_file(self, item):
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # -- consumer ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while True:
            t0 = time.perf_counter()
            if self.is_live:
                with self._cond:
                    while self._latest is None and not self._eof and not self._stop.is_set():
                        self._cond.wait(timeout=0.1)
                    item, self._latest = self._latest, None
                if item is None:
                    break
                _, img, ts = item
            else:
                item = self._get_file()
                if item is None:
                    break
                img, ts = item
            yield Frame(i, img, f"frame_{i:06d}", ts, time.perf_counter() - t0)
            i += 1
        if self._error:
            raise EdgeDeeplabError(self._error)

    def _get_file(self):
        """The next decoded item, or None at the end or once :meth:`close` was called (never blocks
        a consumer thread forever)."""
        while not self._stop.is_set():
            try:
                return self._q.get(timeout=0.05)
            except queue.Empty:
                continue
        return None

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=2.0)
        self._cap.release()


def parse_camera_index(spec) -> Optional[int]:
    """Returns the camera index if ``spec`` is an int or an all-digit string, else ``None``."""
    if isinstance(spec, int):
        return spec
    s = str(spec).strip()
    return int(s) if s.isdigit() else None


def open_camera(index: int, width: Optional[int] = None, height: Optional[int] = None,
                open_timeout: float = 5.0) -> ThreadedCapture:
    """Opens camera ``index`` (threaded, dropping stale frames); one-line error if unavailable."""
    name = f"camera {index}"
    if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{index}"):
        raise EdgeDeeplabError(
            f"{name} not found (/dev/video{index} does not exist); connect a camera, pick another "
            "index, or pass a video file/image/folder as --source")
    _quiet_cv()
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        cap.release()
        raise EdgeDeeplabError(f"{name} could not be opened (missing, busy or no permission)")
    if width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(width))
    if height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(height))
    try:
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer stale frames inside the driver
    except Exception:  # pragma: no cover
        pass
    deadline = time.perf_counter() + open_timeout
    first = None
    while time.perf_counter() < deadline:
        ok, img = cap.read()
        if ok and img is not None:
            first = img
            break
        time.sleep(0.05)
    if first is None:
        cap.release()
        raise EdgeDeeplabError(f"{name} opened but delivered no frame in {open_timeout:.0f} s")
    return ThreadedCapture(cap, name, live=True, first_frame=first)


def open_video(path: Union[str, os.PathLike]) -> ThreadedCapture:
    """Opens a video file (threaded decode, no frame dropped); one-line error if unreadable."""
    p = os.fspath(path)
    _quiet_cv()
    cap = cv2.VideoCapture(p)
    ok, first = (cap.read() if cap.isOpened() else (False, None))
    if not ok or first is None:
        cap.release()
        raise EdgeDeeplabError(f"cannot read video {p}: not a video, corrupt, or unsupported codec")
    return ThreadedCapture(cap, p, live=False, first_frame=first)


def list_images(folder: Union[str, os.PathLike]) -> List[Path]:
    """Image files of ``folder`` (by extension), sorted by name."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def open_source(spec, width: Optional[int] = None, height: Optional[int] = None) -> FrameSource:
    """Opens a demo source.

    Args:
        spec: camera index (``0``, ``"1"``), a video file, an image file or a folder of images.
        width, height: requested camera resolution (cameras only; the driver may ignore it).

    Returns:
        A :class:`FrameSource` with ``kind`` in ``camera``/``video``/``image``/``folder``.

    Raises:
        EdgeDeeplabError: missing camera/file, unreadable file, folder without images.
    """
    idx = parse_camera_index(spec)
    if idx is not None and not os.path.exists(str(spec)):
        return open_camera(idx, width, height)
    p = Path(os.fspath(spec))
    if not p.exists():
        raise EdgeDeeplabError(
            f"source not found: {p} (expected a camera index, a video file, an image or a folder)")
    if p.is_dir():
        imgs = list_images(p)
        if not imgs:
            raise EdgeDeeplabError(f"no images ({', '.join(IMAGE_EXTS)}) in folder {p}")
        return ImageSource(imgs, str(p), "folder")
    if p.suffix.lower() in IMAGE_EXTS:
        read_image_bgr(p, "image")  # fail early with a clear message
        return ImageSource([p], str(p), "image")
    try:
        return open_video(p)
    except EdgeDeeplabError:
        if p.suffix.lower() in VIDEO_EXTS:
            raise
        # an image with an unusual extension?
        try:
            read_image_bgr(p, "image")
        except EdgeDeeplabError:
            raise EdgeDeeplabError(f"cannot read {p}: neither a video nor an image OpenCV can decode") from None
        return ImageSource([p], str(p), "image")
