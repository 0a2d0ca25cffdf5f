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


def image_to_input(image: np.ndarray, info: TensorInfo, mean, std) -> np.ndarray:
    """A uint8 RGB image at the model's input size -> its input tensor (batch of 1), as phones feed it.

    * A uint8 input whose quantization absorbs ``(pixel - mean) / std`` (to within one step, as our
      uint8-I/O exports' do) gets the raw pixels, as MediaPipe Tasks, the Task Library and phone apps
      feed it; requantizing the normalized value would land half a step off.
    * Float inputs get ``pixel * (1/std) + (-mean/std)`` in float32, the form MediaPipe's
      preprocessing computes (with mean 127.5 every normalized pixel sits on a rounding tie of an
      int8 input QUANTIZE, so one ulp matters); quantized inputs then quantize that.
    * Integer inputs without quantization get the raw pixels.

    Example:
        >>> info = TensorInfo("x", (1, 1, 1, 3), np.dtype(np.float32))
        >>> image_to_input(np.full((1, 1, 3), 255, np.uint8), info, 127.5, 127.5).ravel().tolist()
        [1.0, 1.0, 1.0]
    """
    dt = np.dtype(info.dtype)
    if np.issubdtype(dt, np.integer) and not info.quantized:
        return np.ascontiguousarray(image[None].astype(dt))
    if info.quantized and dt == np.uint8 and image.dtype == np.uint8:
        from edge_deeplab.core.contract.tflite_metadata.compatibility import raw_pixel_error

        if raw_pixel_error(info.scale, info.zero_point or 0, mean, std) <= 1.0:
            return np.ascontiguousarray(image[None])
    inv = (1.0 / np.asarray(std, np.float32)).astype(np.float32)
    x = image.astype(np.float32) * inv + (-np.asarray(mean, np.float32) * inv).astype(np.float32)
    return np.ascontiguousarray(quantize(x[None], info))
