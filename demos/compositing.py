"""Matte refinement and compositing for the portrait demo (numpy + OpenCV only, no TensorFlow).

The demo turns a segmentation model's person probability into a soft matte ``alpha`` (float32,
``HxW``, 1 = person) and blends the frame over a new background::

    out = background + alpha * (frame - background)

so wherever ``alpha == 1`` the output is the frame, bit for bit, and wherever ``alpha == 0`` it is
the background (blurred frame, replacement image, solid colour, or a view of the matte itself).

Pieces, in pipeline order:

* :class:`edge_deeplab.runtime.model_input.ModelInput` / :func:`~edge_deeplab.core.imaging.crop_box`:
  the runtime's one path into the model input (letterbox or stretch) and cropping the valid region
  of the model output back out (shared with evaluation);
* :class:`TemporalSmoother`: exponential moving average of the soft mask across frames (kills the
  frame-to-frame flicker of a per-frame segmenter);
* :func:`upsample_mask` then :func:`refine_mask`: edge refinement with a box-filter guided filter
  (:func:`edge_deeplab.core.imaging.guided_filter`, He et al. 2010; works without ``cv2.ximgproc``,
  which the headless OpenCV wheels lack) or plain feathering (:func:`feather`);
* :func:`parse_effect` / :func:`apply_effect` / :func:`composite`: the effects;
* :func:`draw_overlay`: FPS and per-stage timings drawn on the frame.

Example:
    >>> import numpy as np
    >>> frame = np.full((4, 4, 3), 200, np.uint8)
    >>> alpha = np.zeros((4, 4), np.float32); alpha[:, :2] = 1
    >>> out = apply_effect(frame, alpha, parse_effect("color:0,0,255"))
    >>> out[0, 0].tolist(), out[0, 3].tolist()      # BGR: person kept, background red
    ([200, 200, 200], [255, 0, 0])
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from demos.refinement import check_refine_method
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import (
    fast_guided_filter,
    guided_filter,
    low_res_size,
    read_image_bgr,
    shrink_by_halves,
)

# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------

def upsample_mask(mask: np.ndarray, frame_hw: Tuple[int, int]) -> np.ndarray:
    """Bilinearly resizes a float mask to ``(height, width)`` of the frame."""
    h, w = int(frame_hw[0]), int(frame_hw[1])
    mask = np.asarray(mask, np.float32)
    if mask.shape[:2] == (h, w):
        return mask
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)


# --------------------------------------------------------------------------------------------
# temporal smoothing and edge refinement
# --------------------------------------------------------------------------------------------

class TemporalSmoother:
    """Exponential moving average of the soft mask across frames, optionally motion-aware.

    ``smoothed = w * previous + (1 - w) * current`` per pixel. Plain EMA (``motion=None``):
    ``w = momentum`` everywhere; it halves a flickering segmenter's frame-to-frame noise energy
    at 0.5 but drags a moving person's edge about a frame behind. Motion-aware (``motion=T``, with
    the grey ``guide`` passed to :meth:`update`): ``w = momentum * exp(-(d / T)^2)`` where ``d``
    is how much the image itself changed at that pixel since the last frame (3x3 mean of the
    absolute grey difference, intensities in [0, 1]), so static regions are smoothed fully and
    where something moved the mask follows the current frame at once. ``momentum = 0`` disables
    smoothing. The state resets by itself when the mask shape changes (a new image of a folder).

    Args:
        momentum: weight of the previous smoothed mask, in ``[0, 1)``.
        motion: image change (in [0, 1] grey levels) at which the weight falls to ``1/e`` of
            ``momentum``; None for a plain EMA.

    Example:
        >>> import numpy as np
        >>> s = TemporalSmoother(0.5)
        >>> float(s.update(np.ones((2, 2), np.float32))[0, 0])
        1.0
        >>> float(s.update(np.zeros((2, 2), np.float32))[0, 0])
        0.5
        >>> m = TemporalSmoother(0.5, motion=0.05)
        >>> still, moved = np.zeros((2, 2), np.uint8), np.full((2, 2), 200, np.uint8)
        >>> _ = m.update(np.ones((2, 2), np.float32), still)
        >>> float(m.update(np.zeros((2, 2), np.float32), moved)[0, 0])   # the image moved: follow
        0.0
    """

    def __init__(self, momentum: float = 0.5, motion: Optional[float] = None):
        if not 0.0 <= float(momentum) < 1.0:
            raise EdgeDeeplabError(f"smoothing momentum must be in [0, 1), got {momentum}")
        if motion is not None and not float(motion) > 0.0:
            raise EdgeDeeplabError(f"smoothing motion threshold must be > 0, got {motion}")
        self.momentum = float(momentum)
        self.motion = None if motion is None else float(motion)
        self._state: Optional[np.ndarray] = None
        self._guide: Optional[np.ndarray] = None

    def reset(self) -> None:
        self._state = None
        self._guide = None

    def update(self, mask: np.ndarray, guide: Optional[np.ndarray] = None) -> np.ndarray:
        """Smooths ``mask`` (``hxw`` float) with the state; ``guide``: the ``hxw`` uint8 grey image
        the mask was predicted from (used by the motion-aware mode)."""
        mask = np.asarray(mask, np.float32)
        prev_guide, self._guide = self._guide, guide
        if self.momentum == 0.0 or self._state is None or self._state.shape != mask.shape:
            self._state = mask.copy()
            return self._state
        if self.motion is None or guide is None or prev_guide is None or prev_guide.shape != guide.shape:
            w = self.momentum
        else:
            d = cv2.absdiff(guide, prev_guide).astype(np.float32)
            d = cv2.blur(d, (3, 3)) * (1.0 / (255.0 * self.motion))
            w = self.momentum * np.exp(-(d * d))
        self._state = mask + w * (self._state - mask)
        return self._state


class FlickerMeter:
    """Mask flicker: mean absolute frame-to-frame change of the matte where the image is static.

    Per frame, on a grid of every ``stride``-th pixel: the pixels whose grey value changed by at
    most ``static`` (0-255 levels) since the previous frame are static; the frame's flicker is the
    mean ``|alpha_t - alpha_{t-1}|`` over them (0 = rock steady, 1 = full on/off blinking).
    :attr:`value` is the mean over frames (None before the second frame), :attr:`static_fraction`
    the mean share of static pixels. A change of frame size starts over.

    Args:
        stride: sampling step in pixels (cost stays tiny at any resolution).
        static: largest grey change (0-255) that still counts as static.

    Example:
        >>> import numpy as np
        >>> f = FlickerMeter(stride=1)
        >>> g = np.zeros((4, 4), np.uint8)
        >>> f.update(np.zeros((4, 4), np.float32), g); f.update(np.full((4, 4), 0.25, np.float32), g)
        >>> f.value, f.static_fraction
        (0.25, 1.0)
    """

    def __init__(self, stride: int = 4, static: int = 4):
        self.stride = max(1, int(stride))
        self.static = int(static)
        self._prev: Optional[tuple] = None
        self._sum = 0.0
        self._static_sum = 0.0
        self.frames = 0

    def update(self, alpha: np.ndarray, gray: np.ndarray) -> None:
        """Adds one frame: its matte ``alpha`` (``HxW`` float in [0, 1], or uint8 in 0..255) and grey
        frame (uint8)."""
        a = np.asarray(alpha)[::self.stride, ::self.stride]
        scale = 1.0 / 255.0 if a.dtype == np.uint8 else 1.0
        a = np.ascontiguousarray(a if a.dtype == np.uint8 else a.astype(np.float32))
        g = np.ascontiguousarray(np.asarray(gray)[::self.stride, ::self.stride])
        prev, self._prev = self._prev, (a, g)
        if prev is None or prev[0].shape != a.shape or prev[0].dtype != a.dtype:
            return
        still = (cv2.absdiff(g, prev[1]) <= self.static).view(np.uint8)
        n = cv2.countNonZero(still)
        self._static_sum += n / still.size
        self.frames += 1
        if n:
            self._sum += cv2.mean(cv2.absdiff(a, prev[0]), mask=still)[0] * scale

    @property
    def value(self) -> Optional[float]:
        return self._sum / self.frames if self.frames else None

    @property
    def static_fraction(self) -> Optional[float]:
        return self._static_sum / self.frames if self.frames else None


def feather(mask: np.ndarray, radius: int) -> np.ndarray:
    """Softens a mask's edge with a Gaussian of roughly ``radius`` pixels (no guide needed)."""
    mask = np.asarray(mask, np.float32)
    if radius <= 0:
        return mask
    k = 2 * int(radius) + 1
    return cv2.GaussianBlur(mask, (k, k), sigmaX=max(0.5, radius / 2.0),
                            borderType=cv2.BORDER_REFLECT)


def matte_levels(alpha: np.ndarray, low: float = 0.1, high: float = 0.9) -> np.ndarray:
    """Stretches ``[low, high]`` to ``[0, 1]``: confident pixels become exactly 0 or 1.

    A segmenter's probability is never exactly 1 on a person, so without this the background
    effect would bleed faintly into the whole person; the edge ramp stays soft (just steeper).

    Example:
        >>> import numpy as np
        >>> matte_levels(np.array([0.05, 0.5, 0.97], np.float32)).tolist()
        [0.0, 0.5, 1.0]
    """
    if not 0.0 <= low < high <= 1.0:
        raise EdgeDeeplabError(f"matte levels need 0 <= low < high <= 1, got {low}, {high}")
    a = (np.asarray(alpha, np.float32) - low) * (1.0 / (high - low))
    return np.clip(a, 0.0, 1.0, out=a)


def default_radius(frame_hw: Tuple[int, int]) -> int:
    """Refinement radius that scales with the frame: ~1/60 of the short side, at least 2."""
    return max(2, int(round(min(frame_hw) / 60)))


def refine_mask(mask: np.ndarray, frame: Optional[np.ndarray] = None, method: str = "guided",
                radius: Optional[int] = None, eps: float = 1e-2) -> np.ndarray:
    """Refines a frame-resolution soft mask's edges; returns float32 in [0, 1].

    Args:
        mask: ``HxW`` float mask (already upsampled to the frame).
        frame: the ``HxWx3`` BGR frame (the guide); required for ``"guided"``.
        method: ``"guided"`` (edges snap to the image), ``"feather"`` (Gaussian) or ``"none"``.
        radius: filter radius in pixels; ``None`` picks :func:`default_radius`.
        eps: guided filter regularisation.
    """
    mask = np.asarray(mask, np.float32)
    r = default_radius(mask.shape[:2]) if radius is None else int(radius)
    check_refine_method(method)
    if method == "none" or r <= 0:
        out = mask
    elif method == "feather":
        out = feather(mask, r)
    elif method == "guided":
        if frame is None:
            raise EdgeDeeplabError("guided refinement needs the frame as a guide")
        sub = max(1, min(mask.shape[:2]) // 240)
        out = guided_filter(frame, mask, r, eps=eps, subsample=sub)
    return np.clip(out, 0.0, 1.0, out=np.array(out, np.float32, copy=True))


def refine_matte(prob: np.ndarray, frame: np.ndarray, method: str = "guided",
                 radius: Optional[int] = None, eps: float = 1e-2,
                 levels: Optional[Tuple[float, float]] = (0.1, 0.9),
                 gray: Optional[np.ndarray] = None, small: Optional[np.ndarray] = None,
                 as_uint8: bool = False) -> np.ndarray:
    """The frame-resolution matte from a low-resolution person probability, touching full-resolution
    pixels as little as possible.

    ``guided``: the fast guided filter (:func:`edge_deeplab.core.imaging.fast_guided_filter`): the
    probability is resized to :func:`~edge_deeplab.core.imaging.low_res_size` of the frame (1/4 of
    720p), the filter's coefficients are computed there and applied to the full-resolution grey
    frame with the levels folded in. ``feather`` / ``none``: bilinear upsampling, then
    :func:`feather` and :func:`matte_levels`. Same result as upsampling first and refining with
    :func:`refine_mask` to within a couple of grey levels on average, several times faster.

    Args:
        prob: ``hxw`` float person probability (the model's, letterbox padding cropped off).
        frame: the ``HxWx3`` BGR uint8 frame.
        method: ``guided``, ``feather`` or ``none``.
        radius: refinement radius in frame pixels (None: :func:`default_radius`).
        eps: guided filter regularisation.
        levels: ``(low, high)`` of :func:`matte_levels`, or None.
        gray: the frame in grey (uint8), if the caller already has it.
        small: the frame already shrunk to :func:`~edge_deeplab.core.imaging.low_res_size` (BGR
            or grey uint8, e.g. :attr:`demos.pipeline.Inferred.small`), if the caller has it.
        as_uint8: return the matte in 0..255 (uint8, what :func:`composite` blends with): no
            full-resolution float clip or conversion.

    Returns:
        float32 ``HxW`` matte in [0, 1] (``as_uint8``: uint8 in 0..255).

    Example:
        >>> import numpy as np
        >>> frame = np.zeros((480, 640, 3), np.uint8); frame[:, 320:] = 200
        >>> prob = np.zeros((48, 64), np.float32); prob[:, 32:] = 1
        >>> a = refine_matte(prob, frame)
        >>> a.shape, float(a[:, :300].max()), float(a[:, 340:].min())
        ((480, 640), 0.0, 1.0)
    """
    check_refine_method(method)
    H, W = frame.shape[:2]
    r = default_radius((H, W)) if radius is None else int(radius)
    p = np.asarray(prob, np.float32)
    if method == "guided" and r > 0:
        if gray is None:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        lh, lw = low_res_size((H, W))
        p = cv2.resize(p, (lw, lh), interpolation=cv2.INTER_LINEAR) if p.shape != (lh, lw) else p
        gs = None
        if small is not None and small.shape[:2] == (lh, lw):
            gs = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return fast_guided_filter(gray, p, r, eps=eps, levels=levels, guide_small=gs, as_uint8=as_uint8)
    a = upsample_mask(p, (H, W))
    if method == "feather" and r > 0:
        a = feather(a, r)
    a = matte_levels(a, *levels) if levels else np.clip(a, 0.0, 1.0)
    return cv2.convertScaleAbs(a, alpha=255.0) if as_uint8 else a


# --------------------------------------------------------------------------------------------
# effects
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class Effect:
    """A background effect.

    Attributes:
        kind: ``"blur"``, ``"replace"``, ``"color"`` or ``"mask"``.
        color: BGR colour for ``"color"``.
        image: BGR background image for ``"replace"``.
        source: the text it was parsed from (for display).
        blur_strength: blur sigma as a fraction of the frame's short side (``"blur"``).
    """

    kind: str
    color: Tuple[int, int, int] = (0, 0, 0)
    image: Optional[np.ndarray] = None
    source: str = ""
    blur_strength: float = 0.04
    _cache: Dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def label(self) -> str:
        return self.source or self.kind


def parse_color(text: str) -> Tuple[int, int, int]:
    """``"R,G,B"`` (0-255) -> BGR tuple."""
    try:
        parts = [int(x) for x in text.replace(" ", "").split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or any(not 0 <= v <= 255 for v in parts):
        raise EdgeDeeplabError(f"colour must be R,G,B with values 0-255, got {text!r}")
    r, g, b = parts
    return (b, g, r)


def parse_effect(text: str) -> Effect:
    """Parses ``blur``, ``replace:IMAGE``, ``color:R,G,B`` or ``mask`` into an :class:`Effect`.

    Example:
        >>> parse_effect("color:0,255,0").color
        (0, 255, 0)
        >>> parse_effect("blur").kind
        'blur'
    """
    text = str(text).strip()
    kind, _, arg = text.partition(":")
    kind = kind.lower()
    if kind == "blur":
        eff = Effect("blur", source=text)
        if arg:
            try:
                eff.blur_strength = float(arg)
            except ValueError:
                raise EdgeDeeplabError(f"blur strength must be a number, got {arg!r}") from None
            if not 0 < eff.blur_strength <= 1:
                raise EdgeDeeplabError(f"blur strength must be in (0, 1], got {arg!r}")
        return eff
    if kind == "mask":
        return Effect("mask", source=text)
    if kind in ("color", "colour"):
        if not arg:
            raise EdgeDeeplabError("color effect needs a colour: color:R,G,B")
        return Effect("color", color=parse_color(arg), source=text)
    if kind == "replace":
        if not arg:
            raise EdgeDeeplabError("replace effect needs an image: replace:PATH")
        return Effect("replace", image=read_image_bgr(arg, "background image"), source=text)
    raise EdgeDeeplabError(
        f"unknown effect {text!r}; use blur, replace:IMAGE, color:R,G,B or mask")


def blur_background(frame: np.ndarray, strength: float = 0.04,
                    small: Optional[np.ndarray] = None) -> np.ndarray:
    """Strong, cheap background blur: Gaussian at reduced resolution, upsampled back.

    The frame is shrunk (area average) by a factor that keeps the Gaussian's sigma about 3 pixels
    there (up to 1/8 of the frame), blurred, and bilinearly enlarged: the cost barely depends on
    the strength, and the full-resolution work is one resize in and one out.

    Args:
        frame: BGR uint8 frame.
        strength: sigma as a fraction of the frame's short side.
        small: the frame already area-averaged down by a whole factor (e.g.
            :attr:`demos.pipeline.Inferred.small`); the shrink then starts from it, so the only
            full-resolution pass is the enlargement.

    Example:
        >>> import numpy as np
        >>> f = np.zeros((720, 1280, 3), np.uint8); f[:, 640:] = 200
        >>> b = blur_background(f)
        >>> b.shape, int(b[0, 0, 0]), int(b[0, -1, 0]), 0 < int(b[0, 640, 0]) < 200
        ((720, 1280, 3), 0, 200, True)
    """
    h, w = frame.shape[:2]
    sigma_full = max(1.0, strength * min(h, w))
    f = int(np.clip(sigma_full // 3, 1, 8))
    if min(h, w) // f < 8:
        f = 1
    target = (max(1, h // f), max(1, w // f))
    if small is None or small.shape[0] < target[0] or small.shape[1] < target[1] or small.shape[2:] != frame.shape[2:]:
        small = frame
    small = shrink_by_halves(small, target) if f > 1 else frame
    blurred = cv2.GaussianBlur(small, (0, 0), sigmaX=max(1.0, sigma_full / f), borderType=cv2.BORDER_REFLECT)
    if f > 1:
        blurred = cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)
    return blurred


def cover_resize(image: np.ndarray, frame_hw: Tuple[int, int]) -> np.ndarray:
    """Resizes ``image`` to cover ``(height, width)`` (aspect kept) and centre-crops it."""
    h, w = frame_hw
    ih, iw = image.shape[:2]
    scale = max(h / ih, w / iw)
    nh, nw = max(h, int(np.ceil(ih * scale))), max(w, int(np.ceil(iw * scale)))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (nh - h) // 2, (nw - w) // 2
    return np.ascontiguousarray(resized[top:top + h, left:left + w])


def make_background(frame: np.ndarray, effect: Effect, small: Optional[np.ndarray] = None) -> np.ndarray:
    """The image shown where ``alpha == 0`` for ``effect`` (same shape as ``frame``); ``small``: the
    frame already shrunk (:func:`blur_background`)."""
    h, w = frame.shape[:2]
    if effect.kind == "blur":
        return blur_background(frame, effect.blur_strength, small)
    if effect.kind == "color":
        key = ("color", h, w, effect.color)
        if key not in effect._cache:
            effect._cache.clear()
            effect._cache[key] = np.empty_like(frame)
            effect._cache[key][:] = np.asarray(effect.color, np.uint8)
        return effect._cache[key]
    if effect.kind == "replace":
        key = ("replace", h, w)
        if key not in effect._cache:
            effect._cache.clear()
            effect._cache[key] = cover_resize(effect.image, (h, w))
        return effect._cache[key]
    raise EdgeDeeplabError(f"effect {effect.kind!r} has no background")


def composite(frame: np.ndarray, background: np.ndarray, alpha: np.ndarray,
              inplace: bool = False) -> np.ndarray:
    """``background + alpha * (frame - background)``, rounded to uint8.

    Exact at the extremes: where ``alpha == 1`` the result equals ``frame``, where ``alpha == 0``
    it equals ``background``; in between it blends monotonically in ``alpha`` (quantized to 1/255,
    the output's own step). Computed in 8 bits with OpenCV's saturating arithmetic, the rise and
    the fall toward the frame separately (``bg + round(a * (f - bg)^+) - round(a * (bg - f)^+)``),
    which is exact and about 1.5x faster than a float blend at 720p. ``alpha`` may be float in
    [0, 1] or already uint8 in 0..255 (:func:`refine_matte` with ``as_uint8``), which skips one
    full-resolution conversion. Only the bounding box of ``alpha > 0`` is blended; outside it the
    output is the background as it is. ``inplace``: blend into ``background`` itself (a fresh
    background the caller owns, like the blur's) instead of a copy.

    Example:
        >>> import numpy as np
        >>> f, bg = np.full((1, 3, 3), 200, np.uint8), np.full((1, 3, 3), 100, np.uint8)
        >>> composite(f, bg, np.array([[0.0, 0.5, 1.0]], np.float32))[0, :, 0].tolist()
        [100, 150, 200]
    """
    if frame.shape != background.shape:
        raise EdgeDeeplabError(f"background shape {background.shape} != frame shape {frame.shape}")
    a = np.asarray(alpha)
    if a.shape != frame.shape[:2]:
        raise EdgeDeeplabError(f"mask shape {a.shape} != frame size {frame.shape[:2]}")
    if frame.dtype != np.uint8 or background.dtype != np.uint8:
        raise EdgeDeeplabError(f"composite needs uint8 images, got {frame.dtype} and {background.dtype}")
    if a.dtype == np.uint8:
        a8 = np.ascontiguousarray(a)
    else:  # rounds and saturates to 0..255
        a8 = cv2.convertScaleAbs(np.ascontiguousarray(a, np.float32), alpha=255.0)
    out = background if inplace else background.copy()
    x, y, w, h = cv2.boundingRect(a8)  # the non-zero pixels: the person and its soft edge
    if w == 0 or h == 0:
        return out
    f, bg, a8 = frame[y:y + h, x:x + w], out[y:y + h, x:x + w], a8[y:y + h, x:x + w]
    if frame.ndim == 3:
        a8 = cv2.merge([a8] * frame.shape[2]) if frame.shape[2] != 3 else cv2.cvtColor(a8, cv2.COLOR_GRAY2BGR)
    rise = cv2.multiply(cv2.subtract(f, bg), a8, scale=1.0 / 255.0)
    fall = cv2.multiply(cv2.subtract(bg, f), a8, scale=1.0 / 255.0)
    cv2.add(bg, rise, dst=rise)
    bg[...] = cv2.subtract(rise, fall, dst=rise)  # the box of `out`, written in place
    return out


def render_matte(alpha: np.ndarray) -> np.ndarray:
    """The matte (float in [0, 1] or uint8) as a BGR image (white = person), for the ``mask`` effect."""
    a = np.asarray(alpha)
    m = a if a.dtype == np.uint8 else (np.clip(a, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(m, cv2.COLOR_GRAY2BGR)


def apply_effect(frame: np.ndarray, alpha: np.ndarray, effect: Effect,
                 small: Optional[np.ndarray] = None) -> np.ndarray:
    """Applies ``effect`` to ``frame`` with the person matte ``alpha`` (1 or 255 = keep the frame);
    ``small``: the frame already shrunk, for the blur (:func:`blur_background`)."""
    if effect.kind == "mask":
        return render_matte(alpha)
    return composite(frame, make_background(frame, effect, small), alpha, inplace=effect.kind == "blur")


def effect_cycle(primary: Effect, extra: Sequence[Effect] = ()) -> list:
    """The effects the ``e`` key cycles through, starting with ``primary``."""
    out = [primary]
    for kind in ("blur", "color:0,177,64", "mask"):
        if not any(e.kind == kind.split(":")[0] for e in out):
            out.append(parse_effect(kind))
    for e in extra:
        if e not in out:
            out.append(e)
    return out


# --------------------------------------------------------------------------------------------
# overlay
# --------------------------------------------------------------------------------------------

def draw_overlay(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Draws text ``lines`` in the top-left corner on a dark box, in place; returns ``image``."""
    if not lines:
        return image
    h, w = image.shape[:2]
    scale = max(0.3, min(0.6, w / 1100.0))
    thick = 1
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(t, font, scale, thick)[0] for t in lines]
    line_h = max(s[1] for s in sizes) + int(8 * scale) + 2
    box_w = min(w, max(s[0] for s in sizes) + 8)
    box_h = min(h, line_h * len(lines) + 4)
    roi = image[:box_h, :box_w]
    roi[:] = (roi.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken for legibility
    for i, t in enumerate(lines):
        y = (i + 1) * line_h - 2
        if y > h:
            break
        cv2.putText(image, t, (4, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return image
