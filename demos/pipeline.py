"""The per-frame portrait pipeline: frame in, composited frame out (each stage timed).

1. ``preprocess``: aspect-preserving resize (letterbox) into the model input, BGR -> RGB;
2. ``inference``: :meth:`edge_deeplab.runtime.Runner.predict` (normalization/quantization per the
   model's metadata);
3. ``mask``: person probability (:mod:`demos.person`), the letterbox's valid region cropped back out,
   temporal smoothing (EMA), upsampling to the frame, edge refinement (guided filter);
4. ``composite``: the effect (blur, replace, colour, matte view) and the FPS/timings overlay.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from demos import compositing as comp
from demos.person import person_probability, resolve_person_channel
from edge_deeplab.core.contract import semantics as contract
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import crop_box, letterbox

STAGES = ("capture", "preprocess", "inference", "mask", "composite", "write", "display")


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
        self.output_kind = contract.output_kind(runner.metadata)
        self.effect = effect
        self.smoother = comp.TemporalSmoother(smoothing)
        if refine not in ("guided", "feather", "none"):
            raise EdgeDeeplabError(f"unknown refinement {refine!r}; use guided, feather or none")
        self.refine = refine
        self.refine_radius = refine_radius
        self.levels = tuple(levels) if levels else None
        if self.levels:
            comp.matte_levels(np.zeros(1, np.float32), *self.levels)  # validates
        norm = getattr(runner, "normalization", None)
        mean = norm()[0] if norm is not None else contract.normalization(None)[0]
        self.pad_value = int(np.clip(np.round(np.mean(mean)), 0, 255))

    def mask(self, frame: np.ndarray, times: Optional[Dict[str, float]] = None) -> np.ndarray:
        """The refined person matte ``(H, W)`` float32 in [0, 1] for a BGR frame."""
        times = {} if times is None else times
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        canvas, box = letterbox(rgb, self.input_hw, pad_value=self.pad_value)
        t1 = time.perf_counter()
        y = self.runner.predict(canvas)
        t2 = time.perf_counter()
        prob = person_probability(y, self.selector, self.output_kind)
        prob = crop_box(prob, box, self.input_hw)
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
