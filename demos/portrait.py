"""Portrait mode from a .tflite segmentation model: background blur / replacement, live or headless.

Pipeline per frame (each stage timed):

1. ``capture``: the next frame from :mod:`demos.capture` (camera read on its own thread, stale frames
   dropped);
2. ``preprocess``: aspect-preserving resize (letterbox) into the model input, BGR -> RGB;
3. ``inference``: :meth:`edge_deeplab.runtime.Runner.predict` (normalization/quantization per the
   model's metadata);
4. ``mask``: person probability (softmax/sigmoid/class map), the letterbox's valid region cropped
   back out, temporal smoothing (EMA), upsampling to the frame, edge refinement (guided filter);
5. ``composite``: the effect (blur, replace, colour, matte view) and the FPS/timings overlay;
6. ``write`` (headless output, video or images) or ``display`` (window mode: show + key poll).

Which output channel is "person" (:func:`resolve_person_channel`): ``--person-class`` if given, else a
label named ``person`` (or human/people/foreground) in the model's metadata, else class 1 of a 2-class
model, class 15 of a 21-class (VOC) model, or the single channel of a 1-channel sigmoid model.

Example:
    >>> from demos.portrait import run_demo                                   # doctest: +SKIP
    >>> res = run_demo("person.tflite", "clip.mp4", effect="blur", headless=True,
    ...                output="out.mp4")                                       # doctest: +SKIP
    >>> res.frames, round(res.fps, 1)                                          # doctest: +SKIP
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from demos import capture as capture_lib
from demos import compositing as comp
from edge_deeplab.errors import EdgeDeeplabError

import cv2  # noqa: E402  (after demos.capture, which quiets OpenCV's logging)

PERSON_LABELS = ("person", "people", "human", "portrait", "foreground", "fg")
VOC_PERSON = 15
STAGES = ("capture", "preprocess", "inference", "mask", "composite", "write", "display")
WINDOW = "edge-deeplab portrait"


# --------------------------------------------------------------------------------------------
# which channel is the person
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class PersonSelector:
    """How to get a person probability out of the model output.

    Attributes:
        mode: ``"softmax"`` (multi-class logits or probabilities), ``"sigmoid"`` (one channel),
            or ``"classmap"`` (integer class map).
        index: the person class (channel) index.
        reason: why this index was chosen (printed by the demo).
        num_classes: channels of the model output (1 for a class map).
    """

    mode: str
    index: int
    reason: str
    num_classes: int


def _labels_of(metadata: Optional[dict]) -> Optional[List[str]]:
    if not metadata:
        return None
    labels = metadata.get("labels")
    if labels is None and isinstance(metadata.get("config"), dict):
        labels = metadata["config"].get("labels")
    return [str(x) for x in labels] if labels else None


def _output_kind(metadata: Optional[dict]) -> Optional[str]:
    """Normalised output kind from metadata: ``logits``, ``probabilities``, ``classmap`` or None."""
    if not metadata:
        return None
    kind = metadata.get("output_kind")
    out = metadata.get("output")
    if kind is None and isinstance(out, dict):
        kind = out.get("kind") or out.get("type")
    elif kind is None and isinstance(out, str):
        kind = out
    if not kind:
        return None
    k = str(kind).lower()
    if k.startswith("logit"):
        return "logits"
    if k.startswith("prob") or k in ("softmax", "sigmoid"):
        return "probabilities"
    if k in ("argmax", "classmap", "class_map", "classes", "labels", "index"):
        return "classmap"
    return None


def resolve_person_channel(output_shape: Sequence[int], output_dtype, metadata: Optional[dict] = None,
                           person_class: Optional[int] = None, quantized: bool = False) -> PersonSelector:
    """Decides which output channel means "person".

    Args:
        output_shape: the model output shape, ``(1, h, w, C)`` or ``(1, h, w)`` for a class map.
        output_dtype: the output dtype (integer + no channels/one channel = class map).
        metadata: the model's metadata (``labels``), or None.
        person_class: explicit override (``--person-class``).
        quantized: the output is a quantized score tensor (int8/uint8 with a scale), not a class map.

    Raises:
        EdgeDeeplabError: the override is out of range, or no rule identifies the person class.

    Example:
        >>> import numpy as np
        >>> resolve_person_channel((1, 64, 64, 21), np.float32).index
        15
        >>> resolve_person_channel((1, 64, 64, 5), np.float32,
        ...                        {"labels": ["background", "person", "ball", "box", "cone"]}).index
        1
        >>> resolve_person_channel((1, 64, 64, 1), np.float32).mode
        'sigmoid'
    """
    shape = tuple(int(s) for s in output_shape)
    dtype = np.dtype(output_dtype)
    kind = _output_kind(metadata)
    is_int = np.issubdtype(dtype, np.integer)
    if len(shape) == 3 or kind == "classmap" or (is_int and not quantized and len(shape) == 4
                                                  and shape[-1] == 1):
        mode, channels = "classmap", None
    elif len(shape) == 4 and shape[-1] == 1:
        mode, channels = "sigmoid", 1
    elif len(shape) == 4:
        mode, channels = "softmax", shape[-1]
    else:
        raise EdgeDeeplabError(f"cannot read a person mask from output shape {list(shape)}")
    labels = _labels_of(metadata)
    n = channels if channels is not None else (len(labels) if labels else None)
    if person_class is not None:
        pc = int(person_class)
        if pc < 0 or (n is not None and mode != "sigmoid" and pc >= n):
            raise EdgeDeeplabError(
                f"--person-class {pc} is out of range for a model with {n} classes")
        if mode == "sigmoid" and pc != 0:
            raise EdgeDeeplabError(
                f"--person-class {pc} given, but the model has a single (sigmoid) output channel; use 0")
        return PersonSelector(mode, pc, f"--person-class {pc}", n or 1)
    if mode == "sigmoid":
        return PersonSelector(mode, 0, "single-channel sigmoid output", 1)
    if labels and (n is None or len(labels) == n):
        low = [l.strip().lower() for l in labels]
        for name in PERSON_LABELS:
            if name in low:
                i = low.index(name)
                return PersonSelector(mode, i, f"label {labels[i]!r} from the model metadata", n or len(labels))
    if n == 2:
        return PersonSelector(mode, 1, "binary model: class 1 is the foreground", 2)
    if mode == "classmap" and n is None:
        return PersonSelector(mode, 1, "class map without labels: assuming 1 = person "
                                       "(override with --person-class)", 2)
    if n == 21:
        return PersonSelector(mode, VOC_PERSON, "21-class model: VOC 'person' is class 15", 21)
    shown = f" (labels: {', '.join(labels[:8])}{'...' if len(labels) > 8 else ''})" if labels else ""
    raise EdgeDeeplabError(
        f"cannot tell which of the model's {n if n else '?'} classes is a person{shown}; "
        "pass --person-class N")


def _softmax_channel(y: np.ndarray, index: int, kind: Optional[str]) -> np.ndarray:
    """P(class ``index``) from ``(h, w, C)`` logits or probabilities."""
    y = np.asarray(y, np.float32)
    if kind != "logits":
        mn, mx = float(y.min()), float(y.max())
        if kind == "probabilities" or (mn >= -1e-4 and mx <= 1.0 + 1e-4
                                       and abs(float(y[::7, ::7].sum(-1).mean()) - 1.0) < 2e-2):
            return y[..., index]
    m = y.max(-1, keepdims=True)
    e = np.exp(y - m)
    return e[..., index] / e.sum(-1)


def person_probability(output: np.ndarray, selector: PersonSelector,
                       output_kind: Optional[str] = None) -> np.ndarray:
    """The person probability ``(h, w)`` float32 in [0, 1] from one (unbatched) model output.

    Example:
        >>> import numpy as np
        >>> sel = PersonSelector("softmax", 1, "", 2)
        >>> p = person_probability(np.array([[[0.0, 10.0], [10.0, 0.0]]], np.float32), sel)
        >>> (p > 0.5).tolist()
        [[True, False]]
    """
    y = np.asarray(output)
    if selector.mode == "classmap":
        if y.ndim == 3:
            y = y[..., 0]
        return (y == selector.index).astype(np.float32)
    if y.ndim == 2:
        y = y[..., None]
    if selector.mode == "sigmoid":
        y = y[..., 0].astype(np.float32)
        if output_kind == "probabilities" or (output_kind is None and y.min() >= 0 and y.max() <= 1):
            return y
        return (1.0 / (1.0 + np.exp(-np.clip(y, -60, 60)))).astype(np.float32)
    return _softmax_channel(y, selector.index, output_kind)


# --------------------------------------------------------------------------------------------
# the per-frame pipeline
# --------------------------------------------------------------------------------------------

def check_model_io(runner) -> tuple:
    """Validates the runner is an image segmentation model; returns the input ``(H, W)``."""
    check = getattr(runner, "check_segmentation_io", None)
    if check is not None:
        check()
    name = Path(getattr(runner, "path", "model")).name
    s, o = tuple(runner.input.shape), tuple(runner.output.shape)
    if len(s) != 4 or s[-1] != 3:
        raise EdgeDeeplabError(
            f"{name} is not an image segmentation model: input shape {list(s)} (expected 1xHxWx3)")
    if len(o) not in (3, 4) or o[1] < 2 or o[2] < 2:
        raise EdgeDeeplabError(
            f"{name} is not a segmentation model: output shape {list(o)} is not per-pixel "
            "(expected 1xHxWxC scores or a 1xHxW class map)")
    return int(s[1]), int(s[2])


class StageTimer:
    """Accumulates per-stage wall times (ms) over frames."""

    def __init__(self):
        self.samples: Dict[str, List[float]] = collections.defaultdict(list)

    def add(self, stage: str, seconds: float) -> None:
        self.samples[stage].append(seconds * 1000.0)

    def mean_ms(self) -> Dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self.samples.items() if v}

    def summary(self) -> Dict[str, Dict[str, float]]:
        out = {}
        for k in STAGES + tuple(k for k in self.samples if k not in STAGES):
            v = self.samples.get(k)
            if v:
                a = np.asarray(v)
                out[k] = {"mean_ms": float(a.mean()), "p50_ms": float(np.median(a)),
                          "p90_ms": float(np.percentile(a, 90)), "n": int(a.size)}
        return out


class PortraitPipeline:
    """Frame in, composited frame out.

    Args:
        runner: an opened :class:`edge_deeplab.runtime.Runner` (``open_runner``).
        effect: an :class:`demos.compositing.Effect` (``parse_effect("blur")``).
        person_class: override of the person channel.
        smoothing: EMA momentum of the soft mask across frames (0 disables).
        refine: ``"guided"``, ``"feather"`` or ``"none"``.
        refine_radius: refinement radius in frame pixels (None: scales with the frame).
        levels: ``(low, high)`` probabilities mapped to alpha 0 and 1 (:func:`comp.matte_levels`),
            so confidently-person pixels are shown untouched; ``None`` keeps the raw probability.

    Example:
        >>> from edge_deeplab.runtime import open_runner                  # doctest: +SKIP
        >>> p = PortraitPipeline(open_runner("m.tflite"), comp.parse_effect("blur"))  # doctest: +SKIP
        >>> out, alpha, times = p.process(frame_bgr)                       # doctest: +SKIP
    """

    def __init__(self, runner, effect: comp.Effect, person_class: Optional[int] = None,
                 smoothing: float = 0.5, refine: str = "guided", refine_radius: Optional[int] = None,
                 levels: Optional[tuple] = (0.1, 0.9)):
        self.runner = runner
        self.input_hw = check_model_io(runner)
        self.selector = resolve_person_channel(runner.output.shape, runner.output.dtype,
                                               runner.metadata, person_class,
                                               quantized=bool(getattr(runner.output, "scale", None)))
        self.output_kind = _output_kind(runner.metadata)
        self.effect = effect
        self.smoother = comp.TemporalSmoother(smoothing)
        if refine not in ("guided", "feather", "none"):
            raise EdgeDeeplabError(f"unknown refinement {refine!r}; use guided, feather or none")
        self.refine = refine
        self.refine_radius = refine_radius
        self.levels = tuple(levels) if levels else None
        if self.levels:
            comp.matte_levels(np.zeros(1, np.float32), *self.levels)  # validates
        mean = (getattr(runner, "normalization", None) or (lambda: (np.full(3, 127.5), None)))()[0]
        self.pad_value = int(np.clip(np.round(np.mean(mean)), 0, 255))

    def mask(self, frame: np.ndarray, times: Optional[Dict[str, float]] = None) -> np.ndarray:
        """The refined person matte ``(H, W)`` float32 in [0, 1] for a BGR frame."""
        times = {} if times is None else times
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        canvas, box = comp.letterbox(rgb, self.input_hw, pad_value=self.pad_value)
        t1 = time.perf_counter()
        y = self.runner.predict(canvas)
        t2 = time.perf_counter()
        prob = person_probability(y, self.selector, self.output_kind)
        prob = comp.crop_box(prob, box, self.input_hw)
        prob = self.smoother.update(prob)
        alpha = comp.upsample_mask(prob, frame.shape[:2])
        alpha = comp.refine_mask(alpha, frame, self.refine, self.refine_radius)
        if self.levels:
            alpha = comp.matte_levels(alpha, *self.levels)
        t3 = time.perf_counter()
        times["preprocess"] = t1 - t0
        times["inference"] = t2 - t1
        times["mask"] = t3 - t2
        return alpha

    def process(self, frame: np.ndarray, effect: Optional[comp.Effect] = None,
                overlay: Optional[Sequence[str]] = None):
        """Runs the pipeline on one BGR frame.

        Returns:
            ``(output_bgr, alpha, times)`` with ``times`` in seconds per stage (preprocess,
            inference, mask, composite).
        """
        if frame is None or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise EdgeDeeplabError(f"expected a BGR uint8 frame, got {getattr(frame, 'shape', None)}")
        times: Dict[str, float] = {}
        alpha = self.mask(frame, times)
        t0 = time.perf_counter()
        out = comp.apply_effect(frame, alpha, effect or self.effect)
        if overlay:
            comp.draw_overlay(out, overlay)
        times["composite"] = time.perf_counter() - t0
        return out, alpha, times


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------

class VideoOutput:
    """Writes frames to a video atomically (``mp4v`` for .mp4/.mov/.m4v/.mkv, ``MJPG`` for .avi).

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
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            if self.writer is not None:
                self.writer.release()
        finally:
            self.tmp.unlink(missing_ok=True)


def write_image(path, img: np.ndarray) -> Path:
    """Encodes ``img`` by the extension of ``path`` and writes it atomically."""
    from edge_deeplab.io_utils import write_bytes_atomic

    path = Path(path)
    ext = path.suffix.lower() or ".png"
    if ext not in capture_lib.IMAGE_EXTS:
        raise EdgeDeeplabError(f"image output must end in one of {', '.join(capture_lib.IMAGE_EXTS)}, got {path.name}")
    ok, buf = cv2.imencode(ext, img)
    if not ok:
        raise EdgeDeeplabError(f"cannot encode image {path}")
    return write_bytes_atomic(path, buf.tobytes())


# --------------------------------------------------------------------------------------------
# GUI
# --------------------------------------------------------------------------------------------

GUI_HINT = ("run with --headless --output OUT.mp4, or install OpenCV's GUI build: "
            "pip uninstall -y opencv-python-headless && pip install 'edge_deeplab[gui]'")


def gui_available() -> tuple:
    """``(ok, reason)``: whether OpenCV can open a window here."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY/WAYLAND_DISPLAY unset)"
    info = cv2.getBuildInformation()
    if "GUI:" in info:
        gui_line = info.split("GUI:", 1)[1].splitlines()[0].strip()
        if gui_line.upper().startswith("NONE"):
            return False, "this OpenCV build has no GUI support (opencv-python-headless)"
    return True, ""


def _open_window() -> None:
    ok, why = gui_available()
    if not ok:
        raise EdgeDeeplabError(f"cannot open a window: {why}; {GUI_HINT}")
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise EdgeDeeplabError(
            f"cannot open a window: this OpenCV build has no GUI support; {GUI_HINT}") from None


# --------------------------------------------------------------------------------------------
# the demo loop
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class DemoResult:
    """What :func:`run_demo` did.

    Attributes:
        frames: frames processed.
        seconds: wall time of the loop.
        fps: end-to-end frames per second (capture to written/shown).
        stages: per-stage ``{mean_ms, p50_ms, p90_ms, n}``.
        dropped: stale camera frames dropped.
        output: the written video/image/folder, if any.
        outputs: every written file.
        person: the :class:`PersonSelector` used.
        source_kind: camera/video/image/folder.
        frame_size: ``(width, height)`` of the last frame.
    """

    frames: int
    seconds: float
    fps: float
    stages: Dict[str, Dict[str, float]]
    dropped: int
    output: Optional[Path]
    outputs: List[Path]
    person: PersonSelector
    source_kind: str
    frame_size: Optional[tuple]
    accelerator: str = "cpu"
    runtime: str = ""

    def report(self) -> str:
        lines = [f"{self.frames} frames from {self.source_kind} in {self.seconds:.2f} s: "
                 f"{self.fps:.1f} FPS end-to-end ({self.accelerator}, {self.runtime})"]
        if self.dropped:
            lines.append(f"dropped {self.dropped} stale camera frames")
        lines.append("stage        mean ms   p50 ms   p90 ms")
        for k, v in self.stages.items():
            lines.append(f"{k:<12}{v['mean_ms']:>8.2f}{v['p50_ms']:>9.2f}{v['p90_ms']:>9.2f}")
        if self.output:
            lines.append(f"wrote {self.output}")
        return "\n".join(lines)


def _overlay_lines(fps: float, times: Dict[str, float], effect: comp.Effect, window: bool) -> List[str]:
    def ms(k):
        return times.get(k, 0.0) * 1000.0

    lines = [f"{fps:5.1f} FPS  effect: {effect.label}",
             f"cap {ms('capture'):.1f}  pre {ms('preprocess'):.1f}  inf {ms('inference'):.1f}  "
             f"mask {ms('mask'):.1f}  comp {ms('composite'):.1f} ms"]
    if window:
        lines.append("q quit  e effect  s screenshot")
    return lines


def _image_output_path(output: Optional[Path], source_kind: str, frame_name: str,
                       single_default_ext: str = ".png") -> Optional[Path]:
    if output is None:
        return None
    if source_kind == "image" and not (output.is_dir() or output.suffix == ""):
        return output
    stem = Path(frame_name).stem
    ext = Path(frame_name).suffix.lower() if Path(frame_name).suffix.lower() in capture_lib.IMAGE_EXTS else single_default_ext
    return output / f"{stem}_portrait{ext}"


def run_demo(model, source="0", effect="blur", person_class: Optional[int] = None,
             accelerator: str = "cpu", threads: Optional[int] = None, headless: bool = False,
             output=None, max_frames: Optional[int] = None, overlay: bool = True,
             refine: str = "guided", smoothing: float = 0.5, screenshot_dir=".",
             runtime: str = "auto", camera_size: Optional[tuple] = None,
             log: Optional[Callable[[str], None]] = print) -> DemoResult:
    """Runs the portrait demo.

    Args:
        model: path to a .tflite segmentation model.
        source: camera index (``0``), video file, image file or folder of images.
        effect: ``blur``, ``replace:IMAGE``, ``color:R,G,B``, ``mask``, or an :class:`Effect`.
        person_class: override of the person channel (see :func:`resolve_person_channel`).
        accelerator: ``cpu`` or ``gpu`` (LiteRT GPU accelerator).
        threads: CPU threads for inference (None: runtime default).
        headless: no window; write ``output`` (video for camera/video sources, an image file for an
            image, a directory for a folder) and print timings.
        output: see ``headless``; optional (timings only) when None.
        max_frames: stop after this many frames (the end of a video also stops).
        overlay: draw FPS and per-stage times on the frames.
        refine: edge refinement, ``guided``, ``feather`` or ``none``.
        smoothing: temporal EMA momentum (0 disables; images of a folder are not smoothed together).
        screenshot_dir: where the ``s`` key saves screenshots (window mode).
        runtime: runtime for :func:`edge_deeplab.runtime.open_runner`.
        camera_size: requested ``(width, height)`` of a camera.
        log: where progress/the report goes (None: silent).

    Returns:
        :class:`DemoResult`.

    Raises:
        EdgeDeeplabError: missing/unreadable model or source, missing camera, a model that is not a
            segmentation model, no GUI in window mode, unwritable output.
    """
    from edge_deeplab.io_utils import require_file
    from edge_deeplab.runtime import open_runner

    say = log or (lambda s: None)
    if max_frames is not None and max_frames < 1:
        raise EdgeDeeplabError(f"--max-frames must be >= 1, got {max_frames}")
    eff = effect if isinstance(effect, comp.Effect) else comp.parse_effect(effect)
    require_file(model, "model")
    out_path = Path(output) if output is not None else None
    if not headless:
        ok, why = gui_available()
        if not ok:
            raise EdgeDeeplabError(f"cannot open a window: {why}; {GUI_HINT}")

    runner = open_runner(model, accelerator=accelerator, threads=threads, runtime=runtime)
    source_obj = None
    video_out: Optional[VideoOutput] = None
    written: List[Path] = []
    timer = StageTimer()
    frames = 0
    last_size = None
    try:
        pipe = PortraitPipeline(runner, eff, person_class=person_class, smoothing=smoothing,
                                refine=refine)
        say(f"model {Path(model).name}: input {list(runner.input.shape)}, output "
            f"{list(runner.output.shape)}, person = class {pipe.selector.index} ({pipe.selector.reason}); "
            f"{getattr(runner, 'runtime_name', '?')} on {accelerator}"
            + ("" if accelerator == "cpu" or getattr(runner, "fully_accelerated", None) is None else
               f" (fully accelerated: {runner.fully_accelerated}"
               + (f"; CPU fallback for {', '.join(runner.unsupported_ops)}" if runner.unsupported_ops else "")
               + ")"))
        source_obj = capture_lib.open_source(
            source, *(camera_size if camera_size else (None, None)))
        kind = source_obj.kind
        if headless and out_path is not None:
            if kind == "folder":
                if out_path.exists() and not out_path.is_dir():
                    raise EdgeDeeplabError(f"output for a folder source must be a directory: {out_path}")
                out_path.mkdir(parents=True, exist_ok=True)
            elif kind == "image":
                if out_path.suffix and out_path.suffix.lower() not in capture_lib.IMAGE_EXTS:
                    raise EdgeDeeplabError(
                        f"output for an image source must be an image file or directory, got {out_path.name}")
                if not out_path.suffix:
                    out_path.mkdir(parents=True, exist_ok=True)
            elif out_path.suffix.lower() in capture_lib.IMAGE_EXTS:
                raise EdgeDeeplabError(f"output for a {kind} source must be a video (.mp4), got {out_path.name}")
        window = not headless
        if window:
            _open_window()
        effects = comp.effect_cycle(eff)
        eff_i = 0
        fps_ema = None
        t_start = time.perf_counter()
        t_prev = t_start
        still = kind in ("image", "folder")
        shot_n = 0
        quit_ = False
        try:
            frame_iter = iter(source_obj)
            while True:
                try:
                    fr = next(frame_iter)
                except StopIteration:
                    break
                img = fr.image
                times = {"capture": fr.wait_s}
                if still:
                    pipe.smoother.reset()
                while True:  # re-render the same still when the effect is switched
                    lines = _overlay_lines(fps_ema or 0.0, last_times if frames else times,
                                           effects[eff_i], window) if overlay else None
                    out, _, t = pipe.process(img, effects[eff_i], lines)
                    times.update(t)
                    t_w = time.perf_counter()
                    if headless and out_path is not None:
                        if kind in ("image", "folder"):
                            p = _image_output_path(out_path, kind, fr.name)
                            written.append(write_image(p, out))
                        else:
                            if video_out is None:
                                # a file keeps its own rate; a camera records at the rate we
                                # actually process (measured), so playback speed is right
                                fps = None if source_obj.is_live else (source_obj.fps or 30.0)
                                video_out = VideoOutput(out_path, fps, (img.shape[1], img.shape[0]))
                            video_out.write(out)
                    key = -1
                    if window:
                        cv2.imshow(WINDOW, out)
                        key = cv2.waitKey(0 if still else 1) & 0xFF
                    times["display" if window else "write"] = time.perf_counter() - t_w
                    if key in (ord("s"), ord("S")):
                        shot_n += 1
                        p = Path(screenshot_dir) / f"portrait_{time.strftime('%Y%m%d_%H%M%S')}_{shot_n:03d}.png"
                        written.append(write_image(p, out))
                        say(f"screenshot: {p}")
                    if key in (ord("e"), ord("E")):
                        eff_i = (eff_i + 1) % len(effects)
                        say(f"effect: {effects[eff_i].label}")
                        if still:
                            continue
                    if key in (ord("q"), ord("Q"), 27):
                        quit_ = True
                    break
                if window:
                    try:
                        if cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                            quit_ = True  # window closed with the mouse
                    except cv2.error:
                        quit_ = True
                for k, v in times.items():
                    timer.add(k, v)
                last_times = dict(times)
                frames += 1
                last_size = (img.shape[1], img.shape[0])
                now = time.perf_counter()
                inst = 1.0 / max(1e-6, now - t_prev)
                t_prev = now
                fps_ema = inst if fps_ema is None else 0.9 * fps_ema + 0.1 * inst
                if quit_ or (max_frames is not None and frames >= max_frames):
                    break
        except KeyboardInterrupt:  # Ctrl-C ends a camera run normally: keep what was recorded
            say("interrupted")
        seconds = time.perf_counter() - t_start
        if frames == 0:
            raise EdgeDeeplabError(f"{source_obj.name} delivered no frames")
        final = None
        if video_out is not None:
            final = video_out.finish()
            written.append(final)
            video_out = None
        elif kind == "image" and written and headless:
            final = written[0]
        elif kind == "folder" and headless and out_path is not None:
            final = out_path
        res = DemoResult(frames=frames, seconds=seconds, fps=frames / max(seconds, 1e-9),
                         stages=timer.summary(), dropped=source_obj.dropped, output=final,
                         outputs=written, person=pipe.selector, source_kind=kind,
                         frame_size=last_size, accelerator=accelerator,
                         runtime=getattr(runner, "runtime_name", "?"))
        say(res.report())
        return res
    except KeyboardInterrupt:
        # Ctrl-C during processing: keep what was recorded, then let the CLI report it.
        if video_out is not None and video_out.frames:
            p = video_out.finish()
            video_out = None
            say(f"interrupted after {frames} frames; wrote {p}")
        raise
    finally:
        if video_out is not None:
            video_out.abort()
        if source_obj is not None:
            source_obj.close()
        try:
            runner.close()
        except Exception:  # noqa: BLE001
            pass
        if not headless:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass


def demo_on_clip(model, out_dir, num_frames: int = 48, width: int = 320, height: int = 240,
                 effect="blur", accelerator: str = "cpu", threads: Optional[int] = None,
                 log: Optional[Callable[[str], None]] = print) -> DemoResult:
    """Renders the procedural demo clip and runs the headless demo on it (what quickstart shows).

    Writes ``out_dir/clip.mp4`` (the input) and ``out_dir/portrait.mp4`` (the result).

    Args:
        model: .tflite segmentation model (with a person class, e.g. the synthetic quickstart model).
        out_dir: output directory (created).
        num_frames, width, height: clip length and frame size.
        effect: the background effect.
        accelerator, threads: inference settings.
        log: progress/report sink (None: silent).

    Example:
        >>> res = demo_on_clip("quickstart/model.tflite", "quickstart/demo")   # doctest: +SKIP
        >>> res.output                                                          # doctest: +SKIP
        PosixPath('quickstart/demo/portrait.mp4')
    """
    from demos.clip import generate_clip

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = generate_clip(out_dir / "clip.mp4", num_frames=num_frames, width=width, height=height)
    return run_demo(model, clip.path, effect=effect, accelerator=accelerator, threads=threads,
                    headless=True, output=out_dir / "portrait.mp4", log=log)
