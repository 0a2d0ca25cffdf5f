"""Placing, tiling, multi-scale and flip averaging of images through a
:class:`~edge_deeplab.evaluation.predictors.Predictor`.

Multi-scale inference (``scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)``) and left-right ``flip``
average the softmax probabilities over all scales/flips. Because models have a fixed input size,
a scale whose resized image exceeds the input is processed as overlapping input-sized tiles (stride
2/3 of the tile) whose probabilities are averaged, as the DeepLab reference does for large images.

Example:
    >>> from edge_deeplab.evaluation.predictors import TFLitePredictor   # doctest: +SKIP
    >>> [(probs, classes)] = predict_images(predictor, [image], scales=(0.75, 1.0), flip=True)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.pixels import resize
from edge_deeplab.evaluation.predictors import Predictor

PAPER_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
TILE_OVERLAP_STRIDE = 2.0 / 3.0



def _tile_starts(length: int, window: int) -> List[int]:
    if length <= window:
        return [0]
    stride = max(1, int(math.ceil(window * TILE_OVERLAP_STRIDE)))
    starts = list(range(0, length - window, stride))
    if not starts or starts[-1] != length - window:
        starts.append(length - window)
    return starts


class _Job:
    """One image's pending windows and accumulators.

    Each scale's canvas comes from the predictor's :class:`~edge_deeplab.runtime.model_input.ModelInput`
    (the runtime's one image-to-input path: geometry, normalization, quantization), so windows are
    already input tensors; outputs go back through the same inverse (:meth:`ModelInput.to_image`'s
    steps: resize to the input, probabilities, crop the image's box, resize to the image).
    """

    def __init__(self, image: np.ndarray, predictor: Predictor, scales, flip: bool):
        mi = predictor.model_input
        self.hw = image.shape[:2]
        self.scales = []
        self.windows = []  # (scale_idx, y, x, flipped, array)
        ih, iw = mi.input_hw
        for si, s in enumerate(scales):
            canvas, box = mi.canvas(image, s)
            ph, pw = canvas.shape[:2]
            self.scales.append({"box": box, "padded": (ph, pw), "acc": None, "cnt": None})
            for y in _tile_starts(ph, ih):
                for x in _tile_starts(pw, iw):
                    win = canvas[y:y + ih, x:x + iw]
                    self.windows.append((si, y, x, False, win))
                    if flip:
                        self.windows.append((si, y, x, True, win[:, ::-1]))

    def add(self, window_meta, out: np.ndarray, predictor: Predictor):
        si, y, x, flipped, _ = window_meta
        mi = predictor.model_input
        ih, iw = mi.input_hw
        st = self.scales[si]
        if predictor.kind == "classes":  # one window at scale 1, no flip (checked by the caller)
            st["acc"] = out
            return
        probs = mi.probabilities(out, predictor.kind)
        if flipped:
            probs = probs[:, ::-1]
        if st["acc"] is None:
            ph, pw = st["padded"]
            st["acc"] = np.zeros((ph, pw, probs.shape[-1]), np.float32)
            st["cnt"] = np.zeros((ph, pw, 1), np.float32)
        st["acc"][y:y + ih, x:x + iw] += probs
        st["cnt"][y:y + ih, x:x + iw] += 1.0

    def finish(self, predictor: Predictor) -> Tuple[Optional[np.ndarray], np.ndarray]:
        """``(probs (H, W, C) or None, class map (H, W) int)``."""
        H, W = self.hw
        if predictor.kind == "classes":
            return predictor.model_input.to_image(self.scales[0]["acc"], self.scales[0]["box"], self.hw, "classes")
        total = None
        for st in self.scales:
            top, left, sh, sw = st["box"]
            p = st["acc"][top:top + sh, left:left + sw] / st["cnt"][top:top + sh, left:left + sw]
            p = resize(p, (H, W), "linear")
            total = p if total is None else total + p
        probs = total / len(self.scales)
        return probs, probs.argmax(-1)


def predict_images(predictor: Predictor, images: Sequence[np.ndarray], *, scales=(1.0,),
                   flip: bool = False) -> List[Tuple[Optional[np.ndarray], np.ndarray]]:
    """Runs ``images`` (uint8 RGB, any sizes) through ``predictor`` with letterboxing, tiling,
    multi-scale and flip averaging; windows of all images are batched together.

    Returns:
        one ``(probs (H, W, C) float32 or None, class map (H, W))`` per image, at the image's size.
    """
    scales = tuple(float(s) for s in scales)
    if not scales or any(s <= 0 for s in scales):
        raise EdgeDeeplabError(f"scales must be positive, got {scales}")
    if predictor.kind == "classes" and (scales != (1.0,) or flip):
        raise EdgeDeeplabError("this model outputs a class map: multi-scale/flip need logits")
    jobs = [_Job(im, predictor, scales, flip) for im in images]
    queue = [(j, w) for j in jobs for w in j.windows]
    bs = predictor.batch_size
    for k in range(0, len(queue), bs):
        chunk = queue[k:k + bs]
        x = np.stack([w[4] for _, w in chunk])
        y = predictor(x)
        for (job, w), out in zip(chunk, y):
            job.add(w, out, predictor)
    results = []
    for j in jobs:
        j.windows = None
        results.append(j.finish(predictor))
    return results
