"""Image helpers every layer shares: reading files, size strings, cropping a model output's valid
region, the guided filter and the class palette (where an image lands in a model input, letterbox
or stretch, is :mod:`edge_deeplab.core.pixels`). numpy + OpenCV + Pillow only (no TensorFlow).

Colour order is in the name: :func:`read_image_rgb` (datasets, evaluation, benchmarks) and
:func:`read_image_bgr` (OpenCV frames: the portrait demo).

Example:
    >>> import numpy as np
    >>> parse_size("64x48"), parse_size(32)
    ((64, 48), (32, 32))
    >>> crop_box(np.zeros((64, 64, 3)), (16, 0, 32, 64)).shape
    (32, 64, 3)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from edge_deeplab.core.errors import EdgeDeeplabError, first_line

#: ``(top, left, height, width)`` of the valid (non-padding) region of a letterboxed image.
Box = Tuple[int, int, int, int]


# --------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------

def parse_size(value, what: str = "input size") -> Tuple[int, int]:
    """``N``, ``"N"``, ``"HxW"`` or ``(H, W)`` -> ``(H, W)``; a one-line error otherwise.

    Example:
        >>> parse_size("512"), parse_size("256x128"), parse_size((3, 5))
        ((512, 512), (256, 128), (3, 5))
    """
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    if isinstance(value, str):
        t = value.lower().replace(" ", "")
        try:
            if "x" in t:
                h, w = t.split("x")
                return int(h), int(w)
            return int(t), int(t)
        except ValueError:
            raise EdgeDeeplabError(f"{what} must be N or HxW, got {value!r}") from None
    v = tuple(int(x) for x in value)
    if len(v) != 2:
        raise EdgeDeeplabError(f"{what} must be N or (H, W), got {v}")
    return v


# --------------------------------------------------------------------------------------------
# reading images
# --------------------------------------------------------------------------------------------


def read_image_rgb(path) -> np.ndarray:
    """Reads an image file as ``uint8`` RGB ``(H, W, 3)`` (Pillow).

    Grayscale, palette, RGBA and CMYK images are converted to RGB. EXIF orientation is NOT
    applied (masks are annotated on the stored pixels).

    Raises:
        EdgeDeeplabError: missing, unreadable, truncated or corrupt file (message names it).
    """
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise EdgeDeeplabError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode != "RGB":
                im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except EdgeDeeplabError:
        raise
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise EdgeDeeplabError(f"cannot read image {p}: {first_line(e)}") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EdgeDeeplabError(f"cannot read image {p}: unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


def read_image_bgr(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """Reads an image as BGR uint8 (OpenCV; grey/alpha/16-bit are converted); one-line error
    otherwise."""
    import cv2

    p = os.fspath(path)
    if not os.path.exists(p):
        raise EdgeDeeplabError(f"{what} not found: {p}")
    if not os.path.isfile(p):
        raise EdgeDeeplabError(f"{what} is not a file: {p}")
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as e:
        raise EdgeDeeplabError(f"cannot read {what} {p}: {e.strerror or e}") from None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise EdgeDeeplabError(f"cannot read {what} {p}: not an image or corrupt")
    return img


# --------------------------------------------------------------------------------------------
# letterbox
# --------------------------------------------------------------------------------------------

def crop_box(array: np.ndarray, box: Box, input_size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Crops the valid region ``box`` (in input pixels) out of a model output.

    Args:
        array: ``h x w [x C]`` model output.
        box: ``(top, left, height, width)`` from :func:`edge_deeplab.core.pixels.fit_box`.
        input_size: ``(H, W)`` the box refers to; when the output resolution differs (a model whose
            logits are at a lower stride), the box is scaled to it. ``None``: same resolution.
    """
    top, left, bh, bw = box
    oh, ow = array.shape[:2]
    if input_size is not None and tuple(input_size) != (oh, ow):
        sy, sx = oh / input_size[0], ow / input_size[1]
        t, l = int(np.floor(top * sy)), int(np.floor(left * sx))  # noqa: E741
        b, r = int(np.ceil((top + bh) * sy)), int(np.ceil((left + bw) * sx))
        return array[t:max(b, t + 1), l:max(r, l + 1)]
    return array[top:top + bh, left:left + bw]


# --------------------------------------------------------------------------------------------
# guided filter (He et al. 2010), box filters only
# --------------------------------------------------------------------------------------------

def box_filter(x: np.ndarray, r: int) -> np.ndarray:
    """Normalized ``(2r+1)^2`` box filter with reflected borders (float32)."""
    import cv2

    return cv2.boxFilter(x, cv2.CV_32F, (2 * r + 1, 2 * r + 1), normalize=True,
                         borderType=cv2.BORDER_REFLECT)


class GuidedFilter:
    """Guided filter with a fixed guide, reusable over many inputs.

    ``GuidedFilter(guide, r, eps)(p)`` filters ``p`` (``HxW`` or ``HxWxC``) steered by the edges of
    ``guide``: the output is locally a linear function of the guide, so edges snap to image edges
    while flat regions are smoothed. Uses only box filters (O(pixels) for any radius, no
    ``cv2.ximgproc``).

    Args:
        guide: uint8 (scaled to [0, 1]) or float image, ``HxW`` (grey) or ``HxWx3`` (colour: the
            full 3x3 colour covariance is used).
        radius: box radius in pixels (window ``2r+1``).
        eps: regularisation; edges with a guide variance well above ``eps`` are preserved.

    Example:
        >>> import numpy as np
        >>> g = np.zeros((20, 20), np.float32); g[:, 10:] = 1
        >>> q = GuidedFilter(g, 3, 1e-4)(g.copy())
        >>> float(abs(q - g).max()) < 0.05
        True
    """

    def __init__(self, guide: np.ndarray, radius: int, eps: float):
        I = np.asarray(guide).astype(np.float32)  # noqa: E741
        if np.asarray(guide).dtype == np.uint8:
            I *= 1.0 / 255.0
        self.color = I.ndim == 3
        self.I, self.r, self.eps = I, int(radius), float(eps)
        self.mean_I = box_filter(I, self.r)
        if self.color:
            H, W = I.shape[:2]
            sigma = np.empty((H, W, 3, 3), np.float32)
            for i in range(3):
                for j in range(i, 3):
                    v = box_filter(I[..., i] * I[..., j], self.r) - self.mean_I[..., i] * self.mean_I[..., j]
                    sigma[..., i, j] = v
                    sigma[..., j, i] = v
            sigma += self.eps * np.eye(3, dtype=np.float32)
            self.inv = np.linalg.inv(sigma)
        else:
            self.var_I = box_filter(I * I, self.r) - self.mean_I * self.mean_I

    def __call__(self, p: np.ndarray) -> np.ndarray:
        r = self.r
        if not self.color:
            mean_p = box_filter(p, r)
            a = (box_filter(self.I * p, r) - self.mean_I * mean_p) / (self.var_I + self.eps)
            b = mean_p - a * self.mean_I
            return box_filter(a, r) * self.I + box_filter(b, r)
        mean_p = box_filter(p, r)                                     # (H, W, C)
        cov = np.stack([box_filter(self.I[..., k:k + 1] * p, r) - self.mean_I[..., k:k + 1] * mean_p
                        for k in range(3)], axis=2)                   # (H, W, 3, C)
        a = np.einsum("hwij,hwjc->hwic", self.inv, cov)               # (H, W, 3, C)
        b = mean_p - np.einsum("hwic,hwi->hwc", a, self.mean_I)
        q = box_filter(b, r)
        for k in range(3):
            q += box_filter(np.ascontiguousarray(a[:, :, k]), r) * self.I[..., k:k + 1]
        return q


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float = 1e-2,
                  subsample: int = 1) -> np.ndarray:
    """Edge-preserving smoothing of a ``HxW`` mask ``src`` steered by a grey version of ``guide``.

    Args:
        guide: ``HxW`` grey or ``HxWx3`` BGR image (uint8, or float in [0, 1]); colour is converted
            to grey.
        src: ``HxW`` float mask to filter.
        radius: box radius in pixels (window ``2r+1``) at full resolution.
        eps: regularisation (intensities in [0, 1], so a full-contrast edge has variance 0.25).
        subsample: "fast guided filter" factor: the coefficients are computed at
            ``1/subsample`` resolution and upsampled, then applied to the full-resolution guide.

    Returns:
        float32 ``HxW``, same range as ``src`` up to overshoot (callers clip).

    Example:
        >>> import numpy as np
        >>> g = np.zeros((20, 20), np.float32); g[:, 10:] = 1
        >>> q = guided_filter(g, g.copy(), radius=3, eps=1e-4)
        >>> float(abs(q - g).max()) < 0.05
        True
    """
    import cv2

    I = np.asarray(guide)  # noqa: E741
    if I.ndim == 3:
        I = cv2.cvtColor(I, cv2.COLOR_BGR2GRAY)  # noqa: E741
    I = I.astype(np.float32)  # noqa: E741
    if guide.dtype == np.uint8:
        I *= 1.0 / 255.0
    p = np.asarray(src, np.float32)
    if I.shape != p.shape:
        raise EdgeDeeplabError(f"guide shape {I.shape} does not match mask shape {p.shape}")
    h, w = p.shape
    s = max(1, int(subsample))
    r = max(1, int(round(radius / s)))
    if s == 1:
        return GuidedFilter(I, r, eps)(p)
    small = (max(1, w // s), max(1, h // s))
    Is = cv2.resize(I, small, interpolation=cv2.INTER_AREA)
    ps = cv2.resize(p, small, interpolation=cv2.INTER_AREA)
    gf = GuidedFilter(Is, r, eps)
    mean_p = box_filter(ps, r)
    a = (box_filter(Is * ps, r) - gf.mean_I * mean_p) / (gf.var_I + eps)
    b = mean_p - a * gf.mean_I
    mean_a = cv2.resize(box_filter(a, r), (w, h), interpolation=cv2.INTER_LINEAR)
    mean_b = cv2.resize(box_filter(b, r), (w, h), interpolation=cv2.INTER_LINEAR)
    return mean_a * I + mean_b


def low_res_size(frame_hw: Tuple[int, int], min_short_side: int = 160) -> Tuple[int, int]:
    """``(height, width)`` where :func:`fast_guided_filter` computes its coefficients: the frame
    divided by the largest of 1, 2, 4 or 8 that keeps the short side at least ``min_short_side``
    (a whole factor, so the area-average downscale takes OpenCV's fast integer path).

    Example:
        >>> low_res_size((720, 1280)), low_res_size((1080, 1920)), low_res_size((120, 160))
        ((180, 320), (270, 480), (120, 160))
    """
    h, w = int(frame_hw[0]), int(frame_hw[1])
    f = 1
    while f < 8 and min(h, w) // (2 * f) >= min_short_side:
        f *= 2
    return max(1, h // f), max(1, w // f)


def shrink_by_halves(image: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Area-average ``image`` down to ``size_hw`` by halving it (2x2 means) while it stays at least
    that size, then one last resize (bilinear when the step left is at most 2x, else area).

    OpenCV's area resize has a fast path for exactly 2x; any other factor takes its generic path,
    several times slower per source pixel (1280x720 to 320x180: 0.3 ms in two halvings against
    1.4 ms in one step, on a 2-core AMD EPYC Zen 4), and two halvings average the same 4x4 blocks.

    Args:
        image: ``HxW`` or ``HxWxC`` uint8/float image.
        size_hw: ``(height, width)`` of the result, at most the image's.

    Returns:
        the image at ``size_hw`` (``image`` itself when it already is that size).

    Example:
        >>> import numpy as np
        >>> im = np.arange(16, dtype=np.float32).reshape(4, 4)
        >>> shrink_by_halves(im, (1, 1)).tolist()
        [[7.5]]
    """
    import cv2

    th, tw = int(size_hw[0]), int(size_hw[1])
    while image.shape[0] // 2 >= th and image.shape[1] // 2 >= tw:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if image.shape[:2] == (th, tw):
        return image
    step = max(image.shape[0] / th, image.shape[1] / tw)
    return cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR if step <= 2 else cv2.INTER_AREA)


def fast_guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float = 1e-2,
                       levels: Optional[Tuple[float, float]] = None,
                       guide_small: Optional[np.ndarray] = None, as_uint8: bool = False) -> np.ndarray:
    """Fast guided filter (He & Sun 2015): coefficients at low resolution, applied at full resolution.

    The linear coefficients ``a, b`` of the guided filter are computed (and box-averaged) at the
    resolution of ``src`` (a low-resolution mask, e.g. the model's output), bilinearly upsampled and
    applied to the full-resolution grey guide: ``q = a * I + b``. Only two resizes, one multiply-add
    and one clip touch full-resolution pixels, all in float32. Optional ``levels = (low, high)``
    maps ``[low, high]`` to ``[0, 1]`` in the same pass (folded into ``a`` and ``b``).

    Args:
        guide: full-resolution ``HxW`` grey or ``HxWx3`` BGR image, uint8.
        src: ``hxw`` float mask at low resolution (``h <= H``); its size sets where ``a, b`` are
            computed (:func:`low_res_size` is a good choice).
        radius: box radius in full-resolution pixels (scaled down with ``src``).
        eps: regularisation (intensities in [0, 1]).
        levels: ``(low, high)`` output levels, or None (no stretch).
        guide_small: the grey guide already at ``src``'s size (uint8), if the caller has it.
        as_uint8: return the matte in 0..255 (uint8): the 255 is folded into ``a, b`` at low
            resolution and OpenCV's saturating conversion does the clip and the rounding, so the
            full-resolution work is two resizes, one multiply and one add (no float clip pass).

    Returns:
        float32 ``HxW`` in [0, 1] (``as_uint8``: uint8 in 0..255, the float result rounded).

    Example:
        >>> import numpy as np
        >>> g = np.zeros((60, 80), np.uint8); g[:, 40:] = 255
        >>> m = np.zeros((15, 20), np.float32); m[:, 10:] = 1
        >>> q = fast_guided_filter(g, m, radius=4, eps=1e-3)
        >>> q.shape, float(q[:, :38].max()) < 0.05, float(q[:, 42:].min()) > 0.95
        ((60, 80), True, True)
    """
    import cv2

    gray = np.asarray(guide)
    if gray.dtype != np.uint8:
        raise EdgeDeeplabError(f"fast_guided_filter needs a uint8 guide, got {gray.dtype}")
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    H, W = gray.shape
    p = np.asarray(src, np.float32)
    h, w = p.shape
    if h > H or w > W:
        raise EdgeDeeplabError(f"mask {p.shape} is larger than the guide {gray.shape}")
    if guide_small is None or guide_small.shape != (h, w):
        guide_small = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
    Is = guide_small.astype(np.float32)
    Is *= 1.0 / 255.0
    r = max(1, int(round(radius * h / H)))
    mean_I = box_filter(Is, r)
    mean_p = box_filter(p, r)
    var_I = box_filter(Is * Is, r) - mean_I * mean_I
    a = (box_filter(Is * p, r) - mean_I * mean_p) / (var_I + eps)
    b = mean_p - a * mean_I
    a = box_filter(a, r)
    b = box_filter(b, r)
    gain, bias = 1.0 / 255.0, 0.0  # the full-resolution guide stays uint8: fold its 1/255 into a
    if levels is not None:
        low, high = float(levels[0]), float(levels[1])
        if not 0.0 <= low < high <= 1.0:
            raise EdgeDeeplabError(f"levels need 0 <= low < high <= 1, got {low}, {high}")
        gain, bias = gain / (high - low), -low / (high - low)
        b = b * (1.0 / (high - low)) + bias
    if as_uint8:
        gain, b = gain * 255.0, b * 255.0
    a *= gain
    if (h, w) != (H, W):
        a = cv2.resize(a, (W, H), interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(b, (W, H), interpolation=cv2.INTER_LINEAR)
    if as_uint8:
        cv2.multiply(a, gray, dst=a, dtype=cv2.CV_32F)
        return cv2.add(a, b, dtype=cv2.CV_8U)  # rounds and saturates to 0..255
    np.multiply(a, gray, out=a)
    np.add(a, b, out=a)
    return np.clip(a, 0.0, 1.0, out=a)


# --------------------------------------------------------------------------------------------
# palette
# --------------------------------------------------------------------------------------------

def voc_palette(n: int = 256) -> list:
    """The PASCAL VOC colour map as a flat ``[r, g, b, ...]`` list of ``n`` entries (the one
    class palette: prediction PNGs and the quickstart pictures)."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def colorize(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """RGB picture of a class map with :func:`voc_palette`; ids ``>= num_classes`` (ignore) are
    white."""
    pal = np.asarray(voc_palette(max(1, num_classes)), np.uint8).reshape(-1, 3)
    out = np.full(mask.shape + (3,), 255, np.uint8)
    valid = mask < num_classes
    out[valid] = pal[mask[valid]]
    return out
