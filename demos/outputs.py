"""Where the portrait demo writes: videos (atomically) and images."""

from __future__ import annotations

import os
import time
from fractions import Fraction
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

from demos import capture as capture_lib
from edge_deeplab.core.atomic_io import apply_umask
from edge_deeplab.core.errors import EdgeDeeplabError

#: Containers the demo writes video into (all carry MPEG-4 Part 2, the codec of OpenCV's ``mp4v``);
#: :data:`demos.capture.VIDEO_EXTS` are the ones it reads.
VIDEO_OUTPUT_EXTS = (".mp4", ".avi", ".mov", ".m4v", ".mkv")
#: The encoder's fixed quantizer (MPEG-4's 2 = finest .. 31): the same quality at any frame size
#: and rate. At 4 the demo's videos are at least as faithful as OpenCV's ``mp4v`` writer's (PSNR
#: on the upscaled carphone clip: 39.9 against 38.7 dB at 1280x720, 36.8 against 36.9 at 352x288).
QUANTIZER = 4


def check_video_path(path) -> Path:
    """``path`` as a :class:`~pathlib.Path` if its extension is one of :data:`VIDEO_OUTPUT_EXTS`,
    else a one-line error.

    Example:
        >>> check_video_path("out.mkv").name
        'out.mkv'
    """
    path = Path(path)
    if path.suffix.lower() not in VIDEO_OUTPUT_EXTS:
        raise EdgeDeeplabError(f"video output must end in {', '.join(VIDEO_OUTPUT_EXTS[:-1])} or "
                               f"{VIDEO_OUTPUT_EXTS[-1]}, got {path.name}")
    if path.is_dir():
        raise EdgeDeeplabError(f"video output {path} is a directory")
    return path


def require_video_encoder() -> None:
    """Raises a one-line error when PyAV, the video encoder's binding, is missing (a board venv
    with only ``tflite_runtime`` and OpenCV), so the demo says so before it starts."""
    try:
        import av  # noqa: F401
    except ImportError:
        raise EdgeDeeplabError("writing a video needs PyAV (pip install av); "
                               "images and folders do not") from None


class VideoOutput:
    """Writes frames to a video atomically: MPEG-4 Part 2 (``mp4v``) in any of :data:`VIDEO_OUTPUT_EXTS`.

    Encoded by FFmpeg through PyAV: the frame goes in as YUV 4:2:0 converted by OpenCV (one SIMD
    pass, instead of swscale's), the encoder skips motion search (zero motion vectors) and runs
    on one thread (the demo's other stages have the other cores), at the fixed quantizer
    :data:`QUANTIZER`. At 720p that costs 3.8 ms of CPU per frame against 7.2 ms for OpenCV's
    ``mp4v`` writer, whose files it matches in quality (benchmarks/README.md).

    Frames go to a hidden temporary file beside ``path`` (``.NAME.XXXX.tmp.mp4``); :meth:`finish`
    moves it onto ``path`` (with the user's umask), :meth:`abort` deletes it, so an interrupted or
    failed run leaves an earlier ``path`` exactly as it was.

    Args:
        path: the video to write; it appears only once :meth:`finish` succeeds.
        fps: frame rate to store; ``None`` measures it from the timestamps of the first
            ``measure_frames`` frames (a live camera, whose real processed rate is what plays back
            at the right speed).
        size_wh: ``(width, height)``; other frame sizes are resized to it.
        measure_frames: frames to measure the rate from when ``fps`` is None.

    Example:
        >>> import numpy as np, tempfile, pathlib, cv2
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "v.mp4"
        >>> v = VideoOutput(out, 15, (64, 48))
        >>> for i in range(3):
        ...     v.write(np.full((48, 64, 3), 40 * i, np.uint8))
        >>> v.finish() == out, int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT))
        (True, 3)
    """

    def __init__(self, path, fps: Optional[float], size_wh, measure_frames: int = 15):
        self.path = check_video_path(path)
        ext = self.path.suffix.lower()
        self.size = (int(size_wh[0]), int(size_wh[1]))
        if min(self.size) < 2:
            raise EdgeDeeplabError(f"video frames must be at least 2x2, got {self.size[0]}x{self.size[1]}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=f".tmp{ext}", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.fps = float(fps) if fps else None
        self.measure_frames = max(2, int(measure_frames))
        self._container = None
        self._stream = None
        self._pending: List[tuple] = []
        self.frames = 0
        self._encoded = 0
        if self.fps:
            self._open(self.fps)

    def _open(self, fps: float) -> None:
        require_video_encoder()
        import av

        self.fps = float(min(120.0, max(1.0, fps)))
        # MPEG-4 Part 2 admits time bases up to 1/65535: a rate with denominator <= 100 fits
        rate = Fraction(self.fps).limit_denominator(100)
        try:
            self._container = av.open(str(self.tmp), "w")
            s = self._container.add_stream("mpeg4", rate=rate)
            s.width, s.height = self.size
            s.pix_fmt = "yuv420p"
            s.thread_count = 1
            # constant quality: the quantizer pinned, the rate control given room to keep it
            s.codec_context.qmin = s.codec_context.qmax = QUANTIZER
            s.bit_rate = 100_000_000
            s.codec_context.options = {"motion_est": "zero"}
            self._stream = s
            self._stream_frame = av.VideoFrame.from_ndarray  # per frame, without an import
        except (av.FFmpegError, ValueError) as e:
            self._close()
            self.tmp.unlink(missing_ok=True)
            raise EdgeDeeplabError(f"cannot write video {self.path}: {e}") from None
        pending, self._pending = self._pending, []
        for img, _ in pending:
            self._encode(img)

    def _encode(self, img: np.ndarray) -> None:
        w, h = self.size
        from_ndarray = self._stream_frame
        if w % 2 == 0 and h % 2 == 0:  # OpenCV's BT.601 limited-range I420, what the codec takes
            frame = from_ndarray(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        else:  # odd sizes: FFmpeg converts (and rounds the chroma planes up)
            frame = from_ndarray(np.ascontiguousarray(img), format="bgr24")
        frame.pts = self._encoded
        self._encoded += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _measured_fps(self) -> float:
        ts = [t for _, t in self._pending]
        if len(ts) < 2 or ts[-1] <= ts[0]:
            return 30.0
        return (len(ts) - 1) / (ts[-1] - ts[0])

    def write(self, img: np.ndarray, timestamp: Optional[float] = None) -> None:
        """Encodes one BGR uint8 frame (resized to the video's size if it differs)."""
        if (img.shape[1], img.shape[0]) != self.size:
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        self.frames += 1
        if self._container is None:
            self._pending.append((img.copy(), time.perf_counter() if timestamp is None else timestamp))
            if len(self._pending) >= self.measure_frames:
                self._open(self._measured_fps())
            return
        self._encode(img)

    def _close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def finish(self) -> Path:
        """Flushes the encoder and moves the finished video onto ``path``."""
        if self.frames == 0:
            self.abort()
            raise EdgeDeeplabError(f"no frames to write to {self.path}")
        if self._container is None:
            self._open(self._measured_fps())
        try:
            for packet in self._stream.encode():  # the encoder's delayed frames
                self._container.mux(packet)
            self._close()
        except BaseException:
            self.abort()
            raise
        apply_umask(self.tmp)  # mkstemp made it 0600; the video gets the user's usual mode
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drops the temporary file; an earlier ``path`` stays as it was."""
        try:
            self._close()
        except Exception:  # noqa: BLE001 - a half-written file is deleted anyway
            pass
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
