"""Model inputs/outputs and their quantization math (numpy only).

Example:
    >>> import numpy as np
    >>> info = TensorInfo("x", (1, 2), np.dtype(np.uint8), scale=1 / 127.5, zero_point=128)
    >>> quantize(np.array([-1.0, 1.0]), info).tolist()
    [0, 255]
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from edge_deeplab.core import pixels


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A model input or output."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    scale: Optional[float] = None
    zero_point: Optional[int] = None
    #: the shape as the model declares it, -1 for a dynamic dimension (``shape`` shows it as 1)
    signature: Optional[Tuple[int, ...]] = dataclasses.field(default=None, compare=False)

    @property
    def quantized(self) -> bool:
        return self.scale is not None and np.issubdtype(self.dtype, np.integer)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": np.dtype(self.dtype).name,
                "scale": self.scale, "zero_point": self.zero_point}


def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float values -> the tensor's dtype, using its quantization when it has one."""
    if info.quantized:
        q = np.round(x / info.scale + info.zero_point)
        ii = np.iinfo(info.dtype)
        return np.clip(q, ii.min, ii.max).astype(info.dtype)
    return x.astype(info.dtype, copy=False)


def dequantize(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    """The tensor's values as float32 (integer class maps are returned unchanged)."""
    if info.quantized:
        return ((y.astype(np.float32) - info.zero_point) * info.scale).astype(np.float32)
    return y


def details_to_info(d: dict) -> TensorInfo:
    q = d.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []))
    zps = np.asarray(q.get("zero_points", []))
    scale = float(scales[0]) if scales.size == 1 else None
    zp = int(zps[0]) if zps.size == 1 else None
    if scale is None and d.get("quantization") and d["quantization"][0]:
        scale, zp = float(d["quantization"][0]), int(d["quantization"][1])
    sig = d.get("shape_signature")
    return TensorInfo(name=d["name"], shape=tuple(int(s) for s in d["shape"]),
                      dtype=np.dtype(d["dtype"]), scale=scale, zero_point=zp,
                      signature=tuple(int(s) for s in sig) if sig is not None else None)


def info_from_dict(t: dict) -> TensorInfo:
    """The inverse of :meth:`TensorInfo.to_dict`."""
    return TensorInfo(name=t["name"], shape=tuple(t["shape"]), dtype=np.dtype(t["dtype"]),
                scale=t["scale"], zero_point=t["zero_point"])


def feeds_raw_pixels(info: TensorInfo, mean, std) -> bool:
    """Whether 0..255 pixels go into this input as they are, unnormalized.

    True for an integer input without quantization, and for a uint8 input whose quantization
    absorbs ``(pixel - mean) / std`` to within one step (as our uint8-I/O exports' do): MediaPipe
    Tasks, the Task Library and phone apps feed such a model the raw pixels, and requantizing the
    normalized value would land half a step off.

    Example:
        >>> u8 = TensorInfo("x", (1, 1, 1, 3), np.dtype(np.uint8), scale=1 / 127.5, zero_point=128)
        >>> feeds_raw_pixels(u8, 127.5, 127.5), feeds_raw_pixels(u8, 0.0, 255.0)
        (True, False)
    """
    dt = np.dtype(info.dtype)
    if np.issubdtype(dt, np.integer) and not info.quantized:
        return True
    if info.quantized and dt == np.uint8:
        from edge_deeplab.core.contract.tflite_metadata.compatibility import raw_pixel_error

        return raw_pixel_error(info.scale, info.zero_point or 0, mean, std) <= 1.0
    return False


def image_to_input(image: np.ndarray, info: TensorInfo, mean, std) -> np.ndarray:
    """A uint8 RGB image at the model's input size -> its input tensor (batch of 1), as phones feed it.

    * Raw pixels where :func:`feeds_raw_pixels` says so (a uint8 image into a quantized input).
    * Otherwise :func:`edge_deeplab.core.pixels.normalize` (``pixel * (1/std) + (-mean/std)`` in
      float32, the form MediaPipe's preprocessing computes: with mean 127.5 every normalized pixel
      sits on a rounding tie of an int8 input QUANTIZE, so one ulp matters), then quantized for a
      quantized input. :class:`edge_deeplab.runtime.model_input.ModelInput` does the same per
      model, with the geometry.

    Example:
        >>> info = TensorInfo("x", (1, 1, 1, 3), np.dtype(np.float32))
        >>> image_to_input(np.full((1, 1, 3), 255, np.uint8), info, 127.5, 127.5).ravel().tolist()
        [1.0, 1.0, 1.0]
    """
    if feeds_raw_pixels(info, mean, std) and (image.dtype == np.uint8 or not info.quantized):
        return np.ascontiguousarray(image[None].astype(info.dtype))
    return np.ascontiguousarray(quantize(pixels.normalize(image, mean, std)[None], info))
