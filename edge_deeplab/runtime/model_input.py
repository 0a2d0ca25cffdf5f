"""The one path from an RGB uint8 image to a model's input tensor, and from its output back.

:class:`ModelInput` is built from what the model says about itself (its input tensor and its
metadata) and does, in this order:

1. geometry: ``letterbox`` (default) or ``stretch`` per the metadata's ``input_geometry``
   (:func:`edge_deeplab.core.pixels.fit_box`; area when shrinking, bilinear when enlarging);
2. colour: RGB in; a 1-channel input gets the BT.601 luma;
3. normalization: the literal ``mean``/``std`` of :func:`edge_deeplab.core.contract.normalization`
   (metadata, else the caller's flags, else MobileNet-v2's 127.5/127.5) as
   ``pixel * (1/std) + (-mean/std)`` (:func:`edge_deeplab.core.pixels.normalize`);
4. quantization to the input tensor's dtype, scale and zero point (:func:`~edge_deeplab.runtime.tensors.image_to_input`:
   a uint8 input whose quantization absorbs the normalization gets the raw pixels, as phone SDKs
   feed it); the padding is the normalized mean (0, quantized like any value: the zero point),
   and for a model that normalizes in its graph the graph's mean pixel (what training padded with).

:meth:`ModelInput.to_image` is the inverse for outputs: resize to the input size, probabilities
(softmax of logits), crop the image's box, resize to the image size, argmax. Evaluation (every
predictor and scale), bench (timing and mIoU), quant-report, the exporter's calibration and the
demo all call it, so an int8 model's eval mIoU and its predicted masks agree exactly.

Example:
    >>> import numpy as np
    >>> from edge_deeplab.runtime.tensors import TensorInfo
    >>> mi = ModelInput(TensorInfo("x", (1, 4, 4, 3), np.dtype(np.int8), 1 / 127.5, 0), 127.5, 127.5)
    >>> x, box = mi(np.full((2, 4, 3), 255, np.uint8))
    >>> box, x[0, :, 0, 0].tolist()
    ((1, 0, 2, 4), [0, 127, 127, 0])
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from edge_deeplab.core import pixels
from edge_deeplab.core.contract import semantics as contract
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.pixels import Box
from edge_deeplab.runtime.tensors import TensorInfo, feeds_raw_pixels, quantize

#: BT.601 luma weights for 1-channel models.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``.

    Example:
        >>> softmax(np.array([0.0, 0.0])).tolist()
        [0.5, 0.5]
    """
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _graph_mean(metadata: Optional[dict]):
    """The padding pixel of a model that normalizes in its graph (its graph's mean: the pixel
    training padded with), else None. ``graph_normalization`` is where
    :func:`~edge_deeplab.core.contract.read_model_metadata` keeps it once standard metadata (raw
    pixels: mean 0, std 1) has taken ``normalization``.

    Example:
        >>> _graph_mean({"normalize_in_graph": True, "normalization": {"mean": 0, "std": 1},
        ...              "graph_normalization": {"mean": 127.5, "std": 127.5}}).tolist()
        127.5
    """
    meta = metadata or {}
    if not meta.get("normalize_in_graph"):
        return None
    norm = meta.get("graph_normalization") or contract.normalization_dict(meta)
    return contract.normalization({"normalization": norm})[0]


class ModelInput:
    """Turns uint8 RGB images into one model's input tensor (see the module docstring).

    Args:
        info: the model's input tensor (:class:`~edge_deeplab.runtime.tensors.TensorInfo`,
            ``(1, h, w, c)``).
        mean, std: per-channel normalization of 0..255 pixels (scalars broadcast).
        geometry: ``letterbox`` or ``stretch``.
        pad_pixel: the pixel value the padding stands for (default ``mean``: 0 after
            normalization); a model that normalizes in its graph pads with its graph's mean.

    Example:
        >>> mi = ModelInput(TensorInfo("x", (1, 8, 8, 3), np.dtype(np.float32)), 127.5, 127.5)
        >>> x, box = mi(np.zeros((4, 8, 3), np.uint8))
        >>> x.shape, box, float(x[0, 0, 0, 0]), float(x[0, 2, 0, 0])
        ((1, 8, 8, 3), (2, 0, 4, 8), 0.0, -1.0)
    """

    def __init__(self, info: TensorInfo, mean=None, std=None, geometry: str = "letterbox",
                 pad_pixel=None):
        if len(info.shape) != 4 or info.shape[-1] not in (1, 3):
            raise EdgeDeeplabError(f"not an image input: shape {list(info.shape)} (expected NHWC, 1 or 3 channels)")
        self.info = info
        self.input_hw = (int(info.shape[1]), int(info.shape[2]))
        self.channels = int(info.shape[3])
        self.mean, self.std = contract.normalization(None, mean, std)
        #: where ``mean``/``std`` came from (:meth:`for_model` sets it; ``given`` otherwise)
        self.normalization_source = "given"
        if geometry not in pixels.GEOMETRIES:
            raise EdgeDeeplabError(f"unknown geometry {geometry!r}")
        self.geometry = geometry
        dt = np.dtype(info.dtype)
        px = np.broadcast_to(np.asarray(self.mean if pad_pixel is None else pad_pixel, np.float32), (3,))
        px = px[:self.channels]
        if np.issubdtype(dt, np.integer) and not info.quantized:  # raw integer pixels
            self.pad = np.round(px).astype(dt)
        else:
            self.pad = quantize(pixels.normalize(px, self.mean[:self.channels], self.std[:self.channels]), info)
        self._buf: Optional[np.ndarray] = None
        self._pad_canvas: Optional[np.ndarray] = None
        self._raw = feeds_raw_pixels(info, self.mean, self.std)

    @classmethod
    def for_model(cls, info: TensorInfo, metadata: Optional[dict], mean=None, std=None) -> "ModelInput":
        """The path for a model known by its input tensor and its metadata: the ONE place where
        metadata becomes normalization, geometry and padding (:meth:`for_runner` and quant-report
        use it). Normalization comes from the metadata, else ``mean``/``std``, else the default;
        :attr:`normalization_source` says which (``metadata``, ``flags`` or ``default``); a model
        that normalizes in its graph pads with its graph's mean.

        Args:
            info: the model's input tensor (``(1, h, w, c)``).
            metadata: the model's metadata (``None`` or ``{}`` for a foreign model).
            mean, std: the caller's normalization flags, used only without metadata normalization.

        Example:
            >>> info = TensorInfo("x", (1, 4, 4, 3), np.dtype(np.uint8), 1.0, 0)
            >>> mi = ModelInput.for_model(info, {"normalize_in_graph": True})
            >>> mi.normalization_source, mi.geometry, mi.pad.tolist()
            ('metadata', 'letterbox', [128, 128, 128])
        """
        if contract.has_normalization(metadata):
            (m, s), source = contract.normalization(metadata), "metadata"
        elif mean is not None or std is not None:
            (m, s), source = contract.normalization(None, mean, std), "flags"
        else:
            (m, s), source = contract.normalization(metadata), "default"
        made = cls(info, m, s, pixels.geometry_of(metadata), _graph_mean(metadata))
        made.normalization_source = source
        return made

    @classmethod
    def for_runner(cls, runner, mean=None, std=None) -> "ModelInput":
        """The path for a :class:`~edge_deeplab.runtime.runners.Runner`'s model: :meth:`for_model`
        of its input tensor and metadata.

        Example:
            >>> mi = ModelInput.for_runner(open_runner("m_int8.tflite"))   # doctest: +SKIP
        """
        return cls.for_model(runner.input, runner.metadata, mean, std)

    @classmethod
    def float_input(cls, input_hw, metadata: Optional[dict] = None, channels: int = 3) -> "ModelInput":
        """The path for a float32 model (a Keras model, the exporter's calibration) of ``input_hw``.

        Example:
            >>> ModelInput.float_input((8, 8), {"normalize_in_graph": True}).std.tolist()
            [1.0, 1.0, 1.0]
        """
        h, w = (int(v) for v in input_hw)
        return cls.for_model(TensorInfo("input", (1, h, w, channels), np.dtype(np.float32)), metadata)

    # -- forward ---------------------------------------------------------------------------
    def box(self, image_hw) -> Box:
        """Where an image of ``image_hw`` lands in the input: ``(top, left, h, w)``."""
        return pixels.fit_box(image_hw, self.input_hw, self.geometry)

    def values(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB pixels (any size, already placed) -> input-tensor values ``(h, w, c)``.

        The same values as :func:`~edge_deeplab.runtime.tensors.image_to_input`: raw pixels where
        :func:`~edge_deeplab.runtime.tensors.feeds_raw_pixels` says so (decided once per model),
        else normalized, then quantized.
        """
        if image.ndim != 3 or image.shape[2] != 3:
            raise EdgeDeeplabError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        if self.channels == 1:
            grey = (image.astype(np.float32) @ LUMA)[..., None]
            return quantize(pixels.normalize(grey, self.mean[:1], self.std[:1]), self.info)
        if self._raw:
            return image.astype(self.info.dtype, copy=False)
        return quantize(pixels.normalize(image, self.mean, self.std), self.info)

    def canvas(self, image: np.ndarray, scale: float = 1.0, out: Optional[np.ndarray] = None
               ) -> Tuple[np.ndarray, Box]:
        """``(canvas (ph, pw, c) in the input's dtype, box)``: the image placed at ``scale``.

        At scale 1 the canvas is the input; a larger scaled image gives a larger canvas (for
        tiling). ``out``: a preallocated canvas of the right shape and dtype to fill.
        """
        (ph, pw), box = pixels.fit_canvas(image.shape[:2], self.input_hw, self.geometry, scale)
        return self.place(pixels.resize(image, box[2:]), box, (ph, pw), out), box

    def place(self, resized: np.ndarray, box: Box, canvas_hw=None, out: Optional[np.ndarray] = None
              ) -> np.ndarray:
        """An image already resized to ``box``'s size -> the canvas (default: the input) in the
        input's dtype, padded with :attr:`pad` (the normalized mean; the graph's mean pixel for a
        model that normalizes in its graph). ``out``: a preallocated canvas to fill."""
        ph, pw = canvas_hw or self.input_hw
        top, left, nh, nw = box
        shape = (ph, pw, self.channels)
        if out is None or out.shape != shape or out.dtype != np.dtype(self.info.dtype):
            out = np.empty(shape, np.dtype(self.info.dtype))
        if (nh, nw) != (ph, pw):  # padding: one copy of a padded canvas kept per shape
            if self._pad_canvas is None or self._pad_canvas.shape != shape:
                self._pad_canvas = np.empty(shape, out.dtype)
                self._pad_canvas.reshape(-1, self.channels)[:] = self.pad
            np.copyto(out, self._pad_canvas)
        out[top:top + nh, left:left + nw] = self.values(resized)
        return out

    def __call__(self, image: np.ndarray, reuse: bool = False) -> Tuple[np.ndarray, Box]:
        """``(input tensor (1, h, w, c), box)`` for a uint8 RGB image of any size.

        ``reuse``: write into a buffer kept by this object (no allocation per frame; the tensor is
        overwritten by the next call), for the demo's and bench's loops.
        """
        buf, box = self.canvas(image, 1.0, out=self._buf if reuse else None)
        if reuse:
            self._buf = buf
        return buf[None], box

    # -- inverse ---------------------------------------------------------------------------
    def to_image(self, y: np.ndarray, box: Box, image_hw, kind: str = "logits"
                 ) -> Tuple[Optional[np.ndarray], np.ndarray]:
        """One dequantized output ``(oh, ow[, C])`` -> ``(probabilities (H, W, C) or None, class map (H, W))``.

        Args:
            y: the output (no batch axis): logits, probabilities or a class map.
            box: from :meth:`__call__`.
            image_hw: the image's size.
            kind: ``logits``, ``probabilities`` or ``classes``.
        """
        if kind == "classes":
            c = y[..., 0] if y.ndim == 3 else y
            return None, self.back_to_image(c.astype(np.int32), box, image_hw, "nearest")
        p = self.back_to_image(self.probabilities(y, kind), box, image_hw, "linear")
        return p, p.argmax(-1)

    def back_to_image(self, y: np.ndarray, box: Box, image_hw, how: str = "linear") -> np.ndarray:
        """An output map at any resolution -> the image's pixels: resized to the input size, the
        image's ``box`` cropped out, resized to ``image_hw`` (``how``: ``linear`` or ``nearest``)."""
        top, left, nh, nw = box
        y = pixels.resize(y, self.input_hw, how)[top:top + nh, left:left + nw]
        return pixels.resize(y, (int(image_hw[0]), int(image_hw[1])), how)

    def probabilities(self, y: np.ndarray, kind: str = "logits") -> np.ndarray:
        """One output at the input size as float32 probabilities (softmax of logits)."""
        y = pixels.resize(np.asarray(y, np.float32), self.input_hw, "linear")
        return y if kind == "probabilities" else softmax(y)
