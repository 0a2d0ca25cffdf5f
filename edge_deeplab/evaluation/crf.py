"""Dense CRF refinement of per-pixel class probabilities.

If the ``pydensecrf`` package is importable it is used (the DeepLab v1/v2 settings); otherwise
:func:`dense_crf` runs a built-in mean-field approximation whose appearance kernel is a
colour-guided filter (He et al.) and whose smoothness kernel is a Gaussian blur (both normalized,
like pydensecrf's default), with a Potts compatibility. It is an approximation of the
fully-connected CRF, not a bit-exact reimplementation.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import GuidedFilter
from edge_deeplab.runtime.model_input import softmax


def _have_pydensecrf() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def dense_crf(image: np.ndarray, probs: np.ndarray, *, iterations: int = 5,
              appearance_weight: float = 4.0, smoothness_weight: float = 3.0,
              appearance_radius: Optional[int] = None, color_eps: float = (13.0 / 255.0) ** 2,
              smoothness_sigma: float = 3.0, backend: str = "auto") -> np.ndarray:
    """Refines per-pixel class probabilities with a fully-connected (dense) CRF.

    Args:
        image: uint8 RGB ``(H, W, 3)``, the guide.
        probs: float ``(H, W, C)`` probabilities (unary = ``-log p``).
        iterations: mean-field iterations.
        appearance_weight, smoothness_weight: kernel weights (DeepLab: 4 and 3).
        appearance_radius: guided-filter radius (default ~ 1/16 of the short side, >= 2), the
            built-in stand-in for the bilateral kernel's spatial extent.
        color_eps: guided-filter regularizer (squared colour scale, DeepLab's sigma_rgb = 13).
        smoothness_sigma: Gaussian kernel sigma in pixels.
        backend: ``"auto"`` (pydensecrf when importable, else built-in), ``"pydensecrf"`` or
            ``"builtin"``.

    Returns:
        float32 ``(H, W, C)`` refined probabilities.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((32, 32, 3), np.uint8); img[:, 16:] = 255
        >>> p = np.full((32, 32, 2), 0.5, np.float32); p[:, :16, 0] += 0.1; p[:, 16:, 1] += 0.1
        >>> p[5, 5] = (0.4, 0.6)  # an isolated wrong pixel
        >>> q = dense_crf(img, p / p.sum(-1, keepdims=True), backend="builtin")
        >>> int(q[5, 5].argmax()), int(q[5, 25].argmax())
        (0, 1)
    """
    H, W, C = probs.shape
    if image.shape[:2] != (H, W):
        raise EdgeDeeplabError(f"CRF: image {image.shape[:2]} and probabilities {probs.shape[:2]} differ")
    p = np.clip(probs.astype(np.float32), 1e-6, 1.0)
    if backend not in ("auto", "pydensecrf", "builtin"):
        raise EdgeDeeplabError(f"unknown CRF backend {backend!r}")
    if backend == "pydensecrf" or (backend == "auto" and _have_pydensecrf()):
        try:
            import pydensecrf.densecrf as dcrf
            from pydensecrf.utils import unary_from_softmax
        except ImportError:
            raise EdgeDeeplabError("CRF backend pydensecrf is not installed "
                                   "(pip install pydensecrf, or use the built-in one)") from None
        d = dcrf.DenseCRF2D(W, H, C)
        d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(p.transpose(2, 0, 1))))
        d.addPairwiseGaussian(sxy=smoothness_sigma, compat=smoothness_weight)
        d.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.ascontiguousarray(image), compat=appearance_weight)
        q = np.array(d.inference(iterations), np.float32).reshape(C, H, W).transpose(1, 2, 0)
        return q
    import cv2

    r = appearance_radius or max(2, min(H, W) // 16)
    gf = GuidedFilter(image, r, color_eps)
    unary = -np.log(p)
    q = p / p.sum(-1, keepdims=True)
    for _ in range(max(0, int(iterations))):
        msg = appearance_weight * gf(q)
        msg += smoothness_weight * cv2.GaussianBlur(q, (0, 0), smoothness_sigma,
                                                    borderType=cv2.BORDER_REFLECT).reshape(q.shape)
        # Potts compatibility: agreeing neighbours lower a label's energy.
        q = softmax(-unary + msg)
    return q.astype(np.float32)
