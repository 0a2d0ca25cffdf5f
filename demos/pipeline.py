"""The per-frame portrait pipeline: frame in, composited frame out (each stage timed).

1. ``preprocess``: the frame area-averaged down to the matte's working resolution by halvings
   (:func:`edge_deeplab.core.imaging.shrink_by_halves`, kept for the matte and the background
   blur), then placed in the model input by the runtime's one path
   (:class:`edge_deeplab.runtime.model_input.ModelInput`: letterbox or stretch per the metadata), BGR -> RGB;
2. ``inference``: :meth:`edge_deeplab.runtime.Runner.predict` (normalization/quantization per the
   model's metadata);
3. ``mask``: person probability (:mod:`demos.person`), the letterbox's valid region cropped back out,
   motion-aware temporal smoothing (EMA), edge refinement (fast guided filter: coefficients at low
   resolution, applied to the full-resolution frame, the matte made in 8 bits);
4. ``composite``: the effect (blur from the shrunk frame, replace, colour, matte view), blended
   in 8 bits, and the FPS/timings overlay.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from demos import compositing as comp
from demos.person import person_probability, resolve_person_channel
from edge_deeplab.core.contract import semantics as contract
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import crop_box, low_res_size, shrink_by_halves
from edge_deeplab.runtime.model_input import ModelInput
from edge_deeplab.runtime.tensors import dequantize

STAGES = ("capture", "preprocess", "inference", "mask", "composite", "write", "display")
#: Stages that are not the model itself (what the speed goal adds up).
NON_INFERENCE = ("preprocess", "mask", "composite", "write")


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


#: Suffix of a stage's CPU time in a ``times`` dict (``"mask" + CPU`` = the mask stage's thread CPU).
CPU = ".cpu"


def thread_cpu() -> float:
    """CPU seconds of the calling thread (what a stage on its own thread costs, whatever the wait)."""
    return time.thread_time()


class StageTimer:
    """Accumulates per-stage wall times (ms) over frames, and CPU times where given.

    A ``times`` key ending in :data:`CPU` (``"mask.cpu"``) is the CPU time of that stage's thread
    for the frame; :meth:`summary` reports its mean as the stage's ``cpu_ms``. With the stages
    overlapped on two cores a stage's wall time includes waiting for a core; its CPU time does not.

    Example:
        >>> t = StageTimer(); t.add("mask", 0.004); t.add("mask.cpu", 0.003)
        >>> t.summary()["mask"]["cpu_ms"]
        3.0
    """

    def __init__(self):
        self.samples: Dict[str, List[float]] = collections.defaultdict(list)

    def add(self, stage: str, seconds: float) -> None:
        self.samples[stage].append(seconds * 1000.0)

    def mean_ms(self) -> Dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self.samples.items() if v}

    def summary(self) -> Dict[str, Dict[str, float]]:
        out = {}
        names = [k for k in self.samples if not k.endswith(CPU)]
        for k in STAGES + tuple(k for k in names if k not in STAGES):
            v = self.samples.get(k)
            if v:
                a = np.asarray(v)
                out[k] = {"mean_ms": float(a.mean()), "p50_ms": float(np.median(a)),
                          "p90_ms": float(np.percentile(a, 90)), "n": int(a.size)}
                c = self.samples.get(k + CPU)
                if c:
                    out[k]["cpu_ms"] = float(np.mean(c))
        return out


@dataclasses.dataclass
class Inferred:
    """What the inference stage hands to the matte stage for one frame.

    Attributes:
        prob: ``hxw`` float32 person probability (letterbox padding cropped off).
        guide: ``hxw`` uint8 grey of the model's view of the frame (for motion-aware smoothing).
        times: seconds of ``preprocess``, ``inference`` and ``postprocess``, wall and (keys ending
            in :data:`CPU`) the thread's CPU; the inference's CPU is the calling thread's only
            (the runtime's own worker threads are not in it).
        small: the BGR frame area-averaged down to
            :func:`~edge_deeplab.core.imaging.low_res_size` (the guided filter's coefficients and
            the background blur start from it), or None.
    """

    prob: np.ndarray
    guide: np.ndarray
    times: Dict[str, float]
    small: Optional[np.ndarray] = None


class PortraitPipeline:
    """Frame in, composited frame out, in two halves that can run on two threads.

    :meth:`infer` (preprocess + inference) and :meth:`finish` (smoothing, matte, composite,
    overlay) keep no state between each other, so :mod:`demos.stages` runs them overlapped; only
    :meth:`finish` keeps state across frames (the smoother, the flicker meter) and must see the
    frames in order. :meth:`process` runs both for one frame.

    Args:
        runner: an opened :class:`edge_deeplab.runtime.Runner` (``open_runner``).
        effect: an :class:`demos.compositing.Effect` (``parse_effect("blur")``).
        person_class: override of the person channel.
        smoothing: EMA momentum of the soft mask across frames (0 disables).
        motion: motion-aware smoothing: image change (grey, [0, 1]) at which the EMA weight falls
            to 1/e (:class:`demos.compositing.TemporalSmoother`); None for a plain EMA.
        refine: ``"guided"``, ``"feather"`` or ``"none"``.
        refine_radius: refinement radius in frame pixels (None: scales with the frame).
        levels: ``(low, high)`` probabilities mapped to alpha 0 and 1 (:func:`comp.matte_levels`),
            so confidently-person pixels are shown untouched; ``None`` keeps the raw probability.
        mean, std: input normalization for a model whose metadata does not say (one or three
            values, applied to 0..255 pixels as ``(x - mean) / std``); the metadata wins.

    Example:
        >>> from edge_deeplab.runtime import open_runner                  # doctest: +SKIP
        >>> p = PortraitPipeline(open_runner("m.tflite"), comp.parse_effect("blur"))  # doctest: +SKIP
        >>> out, alpha, times = p.process(frame_bgr)                       # doctest: +SKIP
    """

    def __init__(self, runner, effect: comp.Effect, person_class: Optional[int] = None,
                 smoothing: float = 0.5, refine: str = "guided", refine_radius: Optional[int] = None,
                 levels: Optional[tuple] = (0.1, 0.9), motion: Optional[float] = 0.04,
                 mean=None, std=None):
        self.runner = runner
        self.input_hw = check_model_io(runner)
        self.selector = resolve_person_channel(runner.output.shape, runner.output.dtype,
                                               runner.metadata, person_class,
                                               quantized=bool(getattr(runner.output, "scale", None)))
        self.output_kind = contract.output_kind(runner.metadata)
        self.effect = effect
        self.smoother = comp.TemporalSmoother(smoothing, motion=motion)
        self.flicker = comp.FlickerMeter()
        self.refine = comp.check_refine_method(refine)
        self.refine_radius = refine_radius
        self.levels = tuple(levels) if levels else None
        if self.levels:
            comp.matte_levels(np.zeros(1, np.float32), *self.levels)  # validates
        # the runtime's one image-to-input path, which also settles the normalization (the
        # metadata's, else --mean/--std, else the default) and says where it came from
        self.model_input = ModelInput.for_runner(runner, mean, std)

    def infer(self, frame: np.ndarray) -> Inferred:
        """Preprocess + inference for one BGR frame (no state: safe on its own thread)."""
        if frame is None or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise EdgeDeeplabError(f"expected a BGR uint8 frame, got {getattr(frame, 'shape', None)}")
        t0, c0 = time.perf_counter(), thread_cpu()
        # halve to the matte's working size (OpenCV's fast 2x area path; kept for the matte and
        # the blur), then place that small image: a 1080p frame costs about what a 720p one does
        small = shrink_by_halves(frame, low_res_size(frame.shape[:2]))
        # the runtime's one image-to-input path decides where the image lands (letterbox, or the
        # stretch a distilled student trained on) and the values (normalization, quantization,
        # padding); the demo only does the resize, with its fast halving path
        box = self.model_input.box(small.shape[:2])
        nh, nw = box[2:]
        view = shrink_by_halves(small, (nh, nw)) if nh <= small.shape[0] and nw <= small.shape[1] \
            else cv2.resize(small, (nw, nh), interpolation=cv2.INTER_LINEAR)
        x = self.model_input.place(cv2.cvtColor(view, cv2.COLOR_BGR2RGB), box)[None]
        t1, c1 = time.perf_counter(), thread_cpu()
        y = dequantize(self.runner.run(x), self.runner.output)[0]
        t2, c2 = time.perf_counter(), thread_cpu()
        prob = crop_box(person_probability(y, self.selector, self.output_kind), box, self.input_hw)
        guide = cv2.cvtColor(view, cv2.COLOR_BGR2GRAY)
        if guide.shape != prob.shape:
            guide = cv2.resize(guide, (prob.shape[1], prob.shape[0]), interpolation=cv2.INTER_AREA)
        times = {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": time.perf_counter() - t2,
                 "preprocess" + CPU: c1 - c0, "inference" + CPU: c2 - c1,
                 "postprocess" + CPU: thread_cpu() - c2}
        return Inferred(prob, guide, times, small)

    def matte8(self, frame: np.ndarray, inferred: Inferred, gray: Optional[np.ndarray] = None) -> np.ndarray:
        """The refined ``HxW`` matte of ``frame`` in 0..255 (uint8; what the demo blends with);
        the smoothing state advances by a frame."""
        prob = self.smoother.update(inferred.prob, inferred.guide)
        return comp.refine_matte(prob, frame, self.refine, self.refine_radius, levels=self.levels,
                                 gray=gray, small=inferred.small, as_uint8=True)

    def matte(self, frame: np.ndarray, inferred: Inferred, gray: Optional[np.ndarray] = None) -> np.ndarray:
        """The refined ``HxW`` float32 matte of ``frame`` in [0, 1]: :meth:`matte8` / 255."""
        return self.matte8(frame, inferred, gray) * np.float32(1.0 / 255.0)

    def finish(self, frame: np.ndarray, inferred: Inferred, effect: Optional[comp.Effect] = None,
               overlay: Optional[Sequence[str]] = None):
        """Smoothing, matte, flicker, composite and overlay for one frame, in frame order.

        Returns:
            ``(output_bgr, alpha, times)``: ``alpha`` the uint8 matte (0..255, :meth:`matte8`),
            ``times`` in seconds of ``mask`` and ``composite``, wall and thread CPU (keys ending
            in :data:`CPU`); ``postprocess``, the person probability, counts into ``mask``.
        """
        t0, c0 = time.perf_counter(), thread_cpu()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if self.refine == "guided" else None
        alpha = self.matte8(frame, inferred, gray)
        self.flicker.update(alpha, gray if gray is not None else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        t1, c1 = time.perf_counter(), thread_cpu()
        out = self.compose(frame, alpha, effect, overlay, small=inferred.small)
        times = {"mask": t1 - t0 + inferred.times.get("postprocess", 0.0),
                 "composite": time.perf_counter() - t1,
                 "mask" + CPU: c1 - c0 + inferred.times.get("postprocess" + CPU, 0.0),
                 "composite" + CPU: thread_cpu() - c1}
        return out, alpha, times

    def compose(self, frame: np.ndarray, alpha: np.ndarray, effect: Optional[comp.Effect] = None,
                overlay: Optional[Sequence[str]] = None, small: Optional[np.ndarray] = None) -> np.ndarray:
        """The effect and the overlay on one frame with its matte (float or uint8); ``small``:
        the frame already shrunk (:attr:`Inferred.small`)."""
        out = comp.apply_effect(frame, alpha, effect or self.effect, small)
        if overlay:
            comp.draw_overlay(out, overlay)
        return out

    def mask(self, frame: np.ndarray, times: Optional[Dict[str, float]] = None) -> np.ndarray:
        """The refined person matte ``(H, W)`` float32 in [0, 1] for a BGR frame."""
        inferred = self.infer(frame)
        t0 = time.perf_counter()
        alpha = self.matte(frame, inferred)
        if times is not None:
            times["preprocess"] = inferred.times["preprocess"]
            times["inference"] = inferred.times["inference"]
            times["mask"] = time.perf_counter() - t0 + inferred.times["postprocess"]
        return alpha

    def process(self, frame: np.ndarray, effect: Optional[comp.Effect] = None,
                overlay: Optional[Sequence[str]] = None):
        """Runs the whole pipeline on one BGR frame (one thread).

        Returns:
            ``(output_bgr, alpha, times)`` with ``alpha`` float32 in [0, 1] and ``times`` in
            seconds per stage (preprocess, inference, mask, composite).
        """
        inferred = self.infer(frame)
        out, alpha, t = self.finish(frame, inferred, effect, overlay)
        alpha = alpha * np.float32(1.0 / 255.0)
        times = {"preprocess": inferred.times["preprocess"], "inference": inferred.times["inference"]}
        times.update(t)
        return out, alpha, times
