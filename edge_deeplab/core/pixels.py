"""Image pixels -> model pixels: the one geometry and the one normalization formula.

Everything that turns an image into a model's input uses these: the runtime's
:class:`~edge_deeplab.runtime.model_input.ModelInput` (evaluation, bench, quant-report, the exporter's
calibration, the demo) and the data pipeline's evaluation batches (:mod:`edge_deeplab.data.pipeline`),
so a model is trained, calibrated, scored and deployed on identically placed pixels.

* Geometry (:func:`fit_box`): ``letterbox`` (the default: resize keeping the aspect ratio, centred,
  the rest padded) or ``stretch`` (resize to the input, no padding), as the model's metadata says
  (``input_geometry``). Resizing (:func:`resize`) uses area averaging when shrinking, bilinear when
  enlarging.
* Padding is the normalized mean: 0 after normalization (mask padding: the ignore label 255).
* Normalization (:func:`normalize`): ``pixel * (1/std) + (-mean/std)`` in float32, the form
  MediaPipe's preprocessing computes (it equals ``(pixel - mean) / std`` to within one ulp).

Example:
    >>> fit_box((100, 200), (64, 64))
    (16, 0, 32, 64)
    >>> fit_box((100, 200), (64, 64), "stretch")
    (0, 0, 64, 64)
    >>> normalize(np.array([0, 255], np.uint8), 127.5, 127.5).tolist()
    [-1.0, 1.0]
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from edge_deeplab.core.errors import EdgeDeeplabError

#: ``(top, left, height, width)`` of the image inside the model input.
Box = Tuple[int, int, int, int]
#: The geometry policies a model's metadata may name (``input_geometry``); the first is the default.
GEOMETRIES = ("letterbox", "stretch")
#: Mask padding (the ignore label).
IGNORE_LABEL = 255


def geometry_of(metadata: Optional[dict]) -> str:
    """The model's geometry policy: its metadata's ``input_geometry``, else ``letterbox``.

    Args:
        metadata: the model's metadata dict (or None for a model without).

    Example:
        >>> geometry_of(None), geometry_of({"input_geometry": "stretch"})
        ('letterbox', 'stretch')
    """
    g = (metadata or {}).get("input_geometry") or GEOMETRIES[0]
    if g not in GEOMETRIES:
        raise EdgeDeeplabError(f"unknown input_geometry {g!r} in the model metadata; "
                               f"expected one of {', '.join(GEOMETRIES)}")
    return g


def fit_box(image_hw: Sequence[int], input_hw: Sequence[int], geometry: str = "letterbox",
            scale: float = 1.0) -> Tuple[Tuple[int, int], Box]:
    """Where an image lands in the model input.

    Args:
        image_hw: ``(H, W)`` of the image.
        input_hw: ``(h, w)`` of the model input.
        geometry: ``letterbox`` or ``stretch``.
        scale: relative to fitting the input (multi-scale inference); a scaled image larger than the
            input makes the canvas larger (it is then cut into input-sized tiles).

    Returns:
        ``box`` ``(top, left, height, width)``; at ``scale`` 1 it lies inside the input. With
        ``scale != 1`` call :func:`fit_canvas` for the canvas too.

    Example:
        >>> fit_box((30, 40), (64, 64))
        (8, 0, 48, 64)
    """
    return fit_canvas(image_hw, input_hw, geometry, scale)[1]


def fit_canvas(image_hw: Sequence[int], input_hw: Sequence[int], geometry: str = "letterbox",
               scale: float = 1.0) -> Tuple[Tuple[int, int], Box]:
    """``(canvas (ph, pw), box)``: :func:`fit_box` with the canvas the box lies in.

    The canvas is the model input, or larger along a side the scaled image exceeds; the image is
    centred in it.

    Example:
        >>> fit_canvas((30, 40), (64, 64), scale=1.5)
        ((72, 96), (0, 0, 72, 96))
    """
    H, W = int(image_hw[0]), int(image_hw[1])
    th, tw = int(input_hw[0]), int(input_hw[1])
    if H <= 0 or W <= 0:
        raise EdgeDeeplabError(f"empty image of size {W}x{H}")
    if geometry == "stretch":
        nh, nw = max(1, int(round(th * scale))), max(1, int(round(tw * scale)))
    elif geometry == "letterbox":
        f = min(th / H, tw / W) * scale
        nh, nw = max(1, int(round(H * f))), max(1, int(round(W * f)))
        if scale == 1.0:
            nh, nw = min(th, nh), min(tw, nw)
    else:
        raise EdgeDeeplabError(f"unknown geometry {geometry!r}; expected one of {', '.join(GEOMETRIES)}")
    ph, pw = max(nh, th), max(nw, tw)
    return (ph, pw), ((ph - nh) // 2, (pw - nw) // 2, nh, nw)


def resize(image: np.ndarray, hw: Sequence[int], how: str = "image") -> np.ndarray:
    """``image`` at ``(h, w)``; the array itself when already that size.

    ``how``: ``image`` (area averaging when shrinking, bilinear when enlarging), ``linear``
    (bilinear both ways: model outputs mapped back) or ``nearest`` (labels, class maps).

    Example:
        >>> resize(np.zeros((4, 6, 3), np.uint8), (2, 3)).shape
        (2, 3, 3)
    """
    import cv2

    h, w = int(hw[0]), int(hw[1])
    H, W = image.shape[:2]
    if (H, W) == (h, w):
        return image
    if how == "nearest":
        interp = cv2.INTER_NEAREST
    elif how == "linear":
        interp = cv2.INTER_LINEAR
    else:
        interp = cv2.INTER_AREA if h <= H and w <= W else cv2.INTER_LINEAR
    if image.ndim == 3 and image.shape[2] > 512:  # OpenCV's channel limit
        return np.concatenate([resize(image[..., i:i + 512], hw, how)
                               for i in range(0, image.shape[2], 512)], axis=2)
    out = cv2.resize(image, (w, h), interpolation=interp)
    if image.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def normalize(pixels: np.ndarray, mean, std, out: Optional[np.ndarray] = None) -> np.ndarray:
    """0..255 pixels -> float32 ``pixel * (1/std) + (-mean/std)`` (``(pixel - mean) / std``).

    Args:
        pixels: uint8 (or float) pixels, channels last.
        mean, std: per-channel (or scalar) normalization.
        out: an optional float32 array of the same shape to write into.

    Example:
        >>> [round(float(v), 3) for v in normalize(np.array([0, 128, 255], np.uint8), 0.0, 255.0)]
        [0.0, 0.502, 1.0]
    """
    inv = (1.0 / np.asarray(std, np.float32)).astype(np.float32)
    bias = (-np.asarray(mean, np.float32) * inv).astype(np.float32)
    if out is None:
        out = np.empty(pixels.shape, np.float32)
    if (inv.size > 1 or bias.size > 1) and pixels.ndim >= 2 and pixels.shape[-1] == max(inv.size, bias.size) \
            and pixels.flags.c_contiguous and out.flags.c_contiguous:
        # per-channel values over whole rows: NumPy's inner loop then runs over width x channels
        # values instead of over 3 (5x faster on a 256x144 RGB image)
        n = pixels.shape[-2]
        row = pixels.shape[-2] * pixels.shape[-1]
        dst = out.reshape(-1, row)
        np.multiply(pixels.reshape(-1, row), np.tile(np.broadcast_to(inv, (pixels.shape[-1],)), n),
                    out=dst, dtype=np.float32)
        dst += np.tile(np.broadcast_to(bias, (pixels.shape[-1],)), n)
        return out
    np.multiply(pixels, inv, out=out, dtype=np.float32)
    out += bias
    return out


def place_pair(image: np.ndarray, mask: np.ndarray, input_hw: Sequence[int], mean, std,
               geometry: str = "letterbox") -> Tuple[np.ndarray, np.ndarray]:
    """An image and its label mask as a float32 model input and its int32 target, the same geometry.

    The image is resized (:func:`resize`), normalized (:func:`normalize`) and padded with 0; the
    mask is resized nearest-neighbour and padded with :data:`IGNORE_LABEL`.

    Example:
        >>> x, y = place_pair(np.zeros((2, 4, 3), np.uint8), np.ones((2, 4), np.uint8), (4, 4), 0, 1)
        >>> y[:, 0].tolist()
        [255, 1, 1, 255]
    """
    (ph, pw), (top, left, nh, nw) = fit_canvas(image.shape[:2], input_hw, geometry)
    x = np.zeros((ph, pw, image.shape[2]), np.float32)
    normalize(resize(image, (nh, nw)), mean, std, out=x[top:top + nh, left:left + nw])
    y = np.full((ph, pw), IGNORE_LABEL, np.int32)
    y[top:top + nh, left:left + nw] = resize(mask, (nh, nw), "nearest")
    return x, y
