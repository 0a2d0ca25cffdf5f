"""Models behind one interface for evaluation: input-tensor windows (NHWC, the model's input size
and dtype, made by the runtime's :class:`~edge_deeplab.runtime.model_input.ModelInput`) -> per-pixel
logits, probabilities or a class map.

:class:`KerasPredictor` wraps a tf_keras model, :class:`TFLitePredictor` a runner from
:func:`edge_deeplab.runtime.open_runner` (input quantization and output dequantization handled).

Example:
    >>> from edge_deeplab.runtime import open_runner                  # doctest: +SKIP
    >>> p = TFLitePredictor(open_runner("model_int8.tflite"))          # doctest: +SKIP
    >>> p.input_hw, p.kind                                             # doctest: +SKIP
    ((257, 257), 'logits')
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import parse_size
from edge_deeplab.runtime.model_input import ModelInput
from edge_deeplab.runtime.tensors import dequantize


class Predictor:
    """A model behind a uniform interface (see :class:`KerasPredictor`, :class:`TFLitePredictor`).

    Attributes:
        input_hw: model input ``(h, w)``.
        num_classes: output channels (``None`` for a class-map output of unknown range).
        kind: ``"logits"``, ``"probabilities"`` or ``"classes"``.
        batch_size: windows per call.
        model_input: the image-to-input path (default: a float32 input with MobileNet-v2's
            normalization).
    """

    input_hw: Tuple[int, int]
    num_classes: Optional[int]
    kind: str = "logits"
    batch_size: int = 1
    _model_input: Optional[ModelInput] = None

    @property
    def model_input(self) -> ModelInput:
        mi = self._model_input
        if mi is None or mi.input_hw != tuple(self.input_hw):
            mi = self._model_input = ModelInput.float_input(self.input_hw)
        return mi

    def __call__(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {}


class KerasPredictor(Predictor):
    """A tf_keras segmentation model (normalized ``(N, H, W, 3)`` -> logits ``(N, H, W, C)``)."""

    def __init__(self, model, input_size=None, batch_size: int = 4, metadata: Optional[dict] = None):
        self.model = model
        shape = tuple(model.input_shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise EdgeDeeplabError(f"not an image model: input shape {shape}")
        if input_size is not None:
            ih, iw = parse_size(input_size)
            if shape[1] is not None and (shape[1], shape[2]) != (ih, iw):
                raise EdgeDeeplabError(
                    f"--input-size {ih}x{iw} does not match the model's fixed input {shape[1]}x{shape[2]}")
        elif shape[1] is None or shape[2] is None:
            raise EdgeDeeplabError("the model has a dynamic input size; pass input_size")
        else:
            ih, iw = shape[1], shape[2]
        self.input_hw = (int(ih), int(iw))
        out = tuple(model.output_shape)
        self.num_classes = int(out[-1]) if len(out) == 4 and out[-1] else None
        self.batch_size = max(1, int(batch_size))
        self._model_input = ModelInput.float_input(self.input_hw, metadata)
        last = model.layers[-1]
        act = getattr(getattr(last, "activation", None), "__name__", "")
        self.kind = "probabilities" if act == "softmax" or type(last).__name__ == "Softmax" else "logits"

    def __call__(self, x):
        y = self.model.predict_on_batch(x)
        return np.asarray(y, dtype=np.float32)


class TFLitePredictor(Predictor):
    """A .tflite model through :func:`edge_deeplab.runtime.open_runner` (windows arrive quantized;
    outputs are dequantized)."""

    def __init__(self, runner):
        self.runner = runner
        runner.check_segmentation_io()
        s = runner.input.shape
        if s[-1] != 3:  # (a 1-channel model would fail deep in the runtime on RGB input)
            raise EdgeDeeplabError(
                f"{Path(runner.path).name} takes {s[-1]}-channel images (input shape {list(s)}); "
                f"eval scores RGB datasets, which need a 3-channel input")
        self.input_hw = (int(s[1]), int(s[2]))
        self._in_batch = int(s[0]) if s[0] and s[0] > 0 else 1
        self.batch_size = 1
        self._model_input = runner.model_input()
        o = runner.output
        self.kind = runner.score_kind()
        self.num_classes = int(o.shape[-1]) if self.kind != "classes" and len(o.shape) == 4 else None

    def __call__(self, x):
        outs = []
        for i in range(x.shape[0]):
            xi = x[i:i + 1]
            if self._in_batch > 1:
                xi = np.concatenate([xi] * self._in_batch, axis=0)
            y = dequantize(self.runner.run(np.ascontiguousarray(xi)), self.runner.output)
            y = np.asarray(y)[0]
            if self.kind == "classes" and y.ndim == 3:
                y = y[..., 0]
            outs.append(y)
        return np.stack(outs)

    def describe(self) -> dict:
        r = self.runner
        return {"runtime": r.runtime_name, "runtime_version": r.runtime_version,
                "accelerator": r.accelerator, "fully_accelerated": r.fully_accelerated,
                "input_dtype": str(r.input.dtype)}
