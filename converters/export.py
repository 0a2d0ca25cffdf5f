"""Keras DeepLab -> TFLite, edge-clean: one dilated DEPTHWISE_CONV_2D per atrous conv, BN folded.

Variants (``variant=``):

===========  ====================================================================================
float32      plain conversion
float16      float16 weights (DEQUANTIZE of constants only); float32 I/O; what mobile GPUs run
dynamic      dynamic-range: int8 weights, float activations (CPU-oriented; hybrid kernels)
int8         full-integer post-training quantization (``TFLITE_BUILTINS_INT8``), calibrated on real
             dataset images when given, else on generated scenes; I/O ``uint8`` (default),
             ``int8`` or ``float32``
qat-int8     a quantization-aware (tfmot) model converted with ``Optimize.DEFAULT``: the fake-quant
             ranges learned in training become the int8 parameters; no calibration set
w8a16        int8 weights, int16 activations, through Google's litert-quantizer
             (:mod:`converters.litert_quant`, recipe ``static_wi8_ai16``), calibrated like int8;
             I/O ``float32`` (default: LiteRT's CompiledModel cannot feed int16 buffers) or
             ``int16`` (for the TFLite interpreter)
===========  ====================================================================================

Selective precision (``keep_float=[PATTERN, ...]``, ``int8`` and ``w8a16`` only): the layers whose
Keras names match a pattern (glob or regex, see :mod:`converters.litert_quant`) stay float, the rest
is quantized. It goes through litert-quantizer (``int8`` then uses its ``static_wi8_ai8`` recipe
and has ``int8`` or ``float32`` I/O: the library cannot make uint8 I/O). Patterns are checked
against the Keras layer names before conversion, and against the converted graph before
calibration; one that matches nothing is a one-line error.

Conversion always runs under :func:`edge_deeplab.model.layers.native_dilated_depthwise` and from a traced
concrete function (the SavedModel detour of ``from_keras_model`` costs 4-5x the time for the same
flatbuffer).

Options:

* ``normalize_in_graph=True``: the model's input becomes raw 0..255 pixels. The normalization
  ``(x - mean) / std`` is a 1x1 ``DepthwiseConv2D`` with bias (weights ``1/std``, bias
  ``-mean/std``) prepended to a flat wrapper model, so TFLite gets one more DEPTHWISE_CONV_2D (never
  MUL/ADD) that every GPU delegate runs and int8 quantizes like any conv.
* ``output="classmap"``: an ARG_MAX over classes is appended; the output is an int32 ``(1, H, W)``
  class map instead of ``(1, H, W, C)`` logits.
* uint8-I/O int8 models: the input's ``(scale, zero_point)`` is recorded in the metadata together
  with whether raw pixels may be fed directly (they may when ``scale ~ 1/std`` and
  ``zero_point ~ mean``, which calibration over the full [-1, 1] range gives: ``real =
  scale * (q - zero_point)`` is then the normalized pixel to within half a quantization step).

Outputs are written atomically (temporary file + ``os.replace``): a failed or interrupted export
never leaves a partial ``.tflite`` and never clobbers the previous one. The JSON metadata (config,
labels, normalization, output kind, I/O quantization) is embedded in the flatbuffer's metadata table
(entry ``"edge_deeplab"``, see :mod:`edge_deeplab.core.contract.metadata`) and written as a sidecar ``X.json``.

Example:
    >>> from edge_deeplab.model.config import ModelConfig
    >>> from edge_deeplab.model.deeplab import build_model
    >>> cfg = ModelConfig(input_size=64, num_classes=3, alpha=0.35)
    >>> info = export_tflite(build_model(cfg), "/tmp/m.tflite", "float16", config=cfg)  # doctest: +SKIP
    >>> info["variant"], info["size_bytes"] > 0                                         # doctest: +SKIP
    ('float16', True)
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from edge_deeplab.core.contract.semantics import (
    INTEGER_VARIANTS,
    NORM_MEAN,
    NORM_STD,
    VARIANTS,
    normalization_dict,
)
from edge_deeplab.core.errors import EdgeDeeplabError, first_line
from edge_deeplab.model.config import ModelConfig

IO_TYPES = ("float32", "uint8", "int8", "int16")
OUTPUTS = ("logits", "classmap")
#: Variants that may keep layers float (``keep_float``).
KEEP_FLOAT_VARIANTS = ("int8", "w8a16")
DEFAULT_CALIBRATION_STEPS = 100
#: Layer name of the in-graph normalization (1x1 DepthwiseConv2D with bias).
NORMALIZATION_LAYER = "input_normalization"


# --------------------------------------------------------------------------------------------
# Calibration images
# --------------------------------------------------------------------------------------------

def structured_images(n: int, size, seed: int = 0) -> Iterator[np.ndarray]:
    """Generated uint8 RGB scenes (not white noise) for calibration when no dataset is given.

    Uses the bundled procedural scene renderer (:func:`edge_deeplab.data.synthetic.render_scene`:
    textured backgrounds, people, balls, boxes, cones) when available, else smooth gradients with
    filled shapes and mild noise. Each image has at least one pure-black and one pure-white pixel,
    so the input quantization covers the full 0..255 range (see the module docstring).

    Args:
        n: number of images.
        size: ``(height, width)``.
        seed: RNG seed (deterministic output).

    Example:
        >>> imgs = list(structured_images(2, (32, 48)))
        >>> imgs[0].shape, imgs[0].dtype, int(imgs[0].min()), int(imgs[0].max())
        ((32, 48, 3), dtype('uint8'), 0, 255)
    """
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    rng = np.random.default_rng(seed)
    render = None
    try:
        from edge_deeplab.data.synthetic import render_scene as render  # noqa: F811
    except Exception:  # noqa: BLE001 - optional; fall back to the local generator
        render = None
    for _ in range(n):
        img = None
        if render is not None:
            try:
                img = np.ascontiguousarray(render(rng, (h, w))[0], dtype=np.uint8)
            except Exception:  # noqa: BLE001
                img = None
        if img is None:
            img = _shapes_image(rng, h, w)
        img = img.copy()
        img[0, 0] = 0
        img[-1, -1] = 255
        yield img


def _shapes_image(rng, h, w) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ang = rng.uniform(0, 2 * np.pi)
    t = ((np.cos(ang) * xx / max(w, 1) + np.sin(ang) * yy / max(h, 1)) + 1) / 2
    img = (1 - t)[..., None] * c0 + t[..., None] * c1
    for _ in range(int(rng.integers(2, 7))):
        color = rng.uniform(0, 255, 3)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.05, 0.4) * h, rng.uniform(0.05, 0.4) * w
        if rng.random() < 0.5:
            m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            m = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        img[m] = color
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def dataset_images(name: str, size, data_dir=None, split: str = "train", steps: int = 100,
                   ) -> Iterator[np.ndarray]:
    """Up to ``steps`` uint8 RGB images from a dataset split, evenly spaced, resized to ``size``.

    Args:
        name: dataset name for :func:`edge_deeplab.data.load_dataset` (``voc``, ``synthetic`` ...).
        size: ``(height, width)`` of the model input.
        data_dir: dataset root.
        split: split to draw from.
        steps: number of images.
    """
    import cv2

    from edge_deeplab.data import load_dataset

    ds = load_dataset(name, data_dir=data_dir, split=split)
    n = len(ds)
    if n == 0:
        raise EdgeDeeplabError(f"calibration dataset {name} ({split}) has no images")
    h, w = size
    idx = np.unique(np.linspace(0, n - 1, num=min(steps, n)).round().astype(int))
    for i in idx:
        img, _ = ds.read(int(i))
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA
                             if img.shape[0] > h else cv2.INTER_LINEAR)
        yield np.ascontiguousarray(img, dtype=np.uint8)


def to_model_range(image_uint8: np.ndarray, mean=NORM_MEAN, std=NORM_STD) -> np.ndarray:
    """uint8 pixels -> the float input the Keras model expects (MobileNet-v2: [-1, 1])."""
    return ((image_uint8.astype(np.float32) - np.asarray(mean, np.float32))
            / np.asarray(std, np.float32))


# --------------------------------------------------------------------------------------------
# Model plumbing
# --------------------------------------------------------------------------------------------

def _is_qat(model) -> bool:
    return any(type(l).__name__ in ("QuantizeWrapperV2", "QuantizeWrapper", "QuantizeLayer")
               for l in getattr(model, "layers", []))


def reuse_layers(model, new_input):
    """Calls ``model``'s layers (shared weights) on ``new_input``: a flat graph, no nested Model.

    Args:
        model: a single-input, single-output functional model.
        new_input: the Keras tensor that replaces ``model.input``.

    Returns:
        The Keras tensor corresponding to ``model.output``.
    """
    from edge_deeplab.core._tf import keras, tf

    if not getattr(model, "_is_graph_network", False) or len(model.inputs) != 1 \
            or len(model.outputs) != 1:
        raise EdgeDeeplabError("in-graph normalization needs a single-input, single-output "
                               "functional Keras model")
    mapping = {id(model.inputs[0]): new_input}
    own_nodes = model._network_nodes  # keys "<layer>_ib-<i>" of this model's nodes

    def sub(t):
        if keras.backend.is_keras_tensor(t):
            if id(t) not in mapping:
                raise EdgeDeeplabError("cannot rebuild the model graph for in-graph normalization")
            return mapping[id(t)]
        return t

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        nodes = [n for i, n in enumerate(layer._inbound_nodes)
                 if f"{layer.name}_ib-{i}" in own_nodes]
        for node in nodes:
            args = tf.nest.map_structure(sub, node.call_args)
            kwargs = tf.nest.map_structure(sub, node.call_kwargs)
            out = layer(*args, **kwargs)
            for o_old, o_new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(out)):
                mapping[id(o_old)] = o_new
    return mapping[id(model.outputs[0])]


def with_input_normalization(model, mean=NORM_MEAN, std=NORM_STD, name: Optional[str] = None):
    """A flat functional model taking raw 0..255 pixels: 1x1 DepthwiseConv2D(+bias) -> ``model``.

    Args:
        model: a float functional model taking normalized input.
        mean, std: per-channel normalization ``(x - mean) / std``.

    Returns:
        A new ``tf_keras`` model sharing ``model``'s layers (and weights).

    Example:
        >>> from edge_deeplab.model.config import ModelConfig            # doctest: +SKIP
        >>> from edge_deeplab.model.deeplab import build_model              # doctest: +SKIP
        >>> m = build_model(ModelConfig(input_size=32, num_classes=2, alpha=0.35))  # doctest: +SKIP
        >>> w = with_input_normalization(m)                          # doctest: +SKIP
        >>> w.layers[1].name                                         # doctest: +SKIP
        'input_normalization'
    """
    from edge_deeplab.core._tf import keras

    shape = tuple(model.input_shape[1:])
    c = shape[-1]
    mean = np.broadcast_to(np.asarray(mean, np.float32), (c,))
    std = np.broadcast_to(np.asarray(std, np.float32), (c,))
    if np.any(std == 0):
        raise EdgeDeeplabError("normalization std must be non-zero")
    inp = keras.Input(shape, name="image")
    dw = keras.layers.DepthwiseConv2D(1, use_bias=True, name=NORMALIZATION_LAYER)
    x = dw(inp)
    dw.set_weights([(1.0 / std).reshape(1, 1, c, 1).astype(np.float32),
                    (-mean / std).astype(np.float32)])
    y = reuse_layers(model, x)
    return keras.Model(inp, y, name=name or f"{model.name}_raw_pixels")


def _resolve(model, variant: str, config: Optional[ModelConfig]):
    """Model object or path -> (keras model, config or None, base metadata, source path)."""
    if not isinstance(model, (str, os.PathLike)):
        return model, config, {}, None
    from edge_deeplab.model import model_io

    if variant == "qat-int8":
        from edge_deeplab.training.qat import load_qat_model

        m, cfg, meta = load_qat_model(model)
    else:
        p = model_io.resolve_model_path(model)
        try:
            m, cfg, meta = model_io.load_model(p)
        except EdgeDeeplabError as e:
            if "Quantize" in str(e):
                raise EdgeDeeplabError(f"{p} is a quantization-aware model; export it with "
                                       f"--variant qat-int8") from None
            raise
    return m, (config or cfg), meta, str(model)


def _io_tf_dtype(tf, io_type):
    return {"float32": tf.float32, "uint8": tf.uint8, "int8": tf.int8}[io_type]


def _representative(images: Iterable[np.ndarray], raw_pixels: bool, mean, std, limit: int,
                    shape):
    """Generator factory for the converter: float32 batches of 1 in the model input's range."""
    def gen():
        for i, img in enumerate(images):
            if i >= limit:
                break
            x = np.asarray(img, np.float32)
            if x.shape != tuple(shape):
                raise EdgeDeeplabError(f"calibration image {i} has shape {x.shape}, the model "
                                       f"expects {tuple(shape)}")
            if raw_pixels:
                if x.min() >= -1.0001 and x.max() <= 1.0001 and img.dtype != np.uint8:
                    x = x * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
            elif img.dtype == np.uint8:
                x = to_model_range(img, mean, std)
            yield [x[None].astype(np.float32)]
    return gen


def _trace_and_convert(model, variant: str, io_type: str, output: str, representative_gen):
    from edge_deeplab.core._tf import tf
    from edge_deeplab.model.layers import native_dilated_depthwise

    shape = (1,) + tuple(int(d) for d in model.input_shape[1:])
    if any(d is None or d <= 0 for d in shape):
        raise EdgeDeeplabError(f"model input must have a fixed size, got {model.input_shape}")

    with native_dilated_depthwise():
        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])
        def serve(x):
            y = model(x, training=False)
            if output == "classmap":
                y = tf.math.argmax(y, axis=-1, output_type=tf.int32)
            return y

        concrete = serve.get_concrete_function()
        with _without_trackable_obj_warning():
            conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        if variant == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif variant == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif variant == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative_gen
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = _io_tf_dtype(tf, io_type)
            if output == "logits":
                conv.inference_output_type = _io_tf_dtype(tf, io_type)
        elif variant == "qat-int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.inference_input_type = _io_tf_dtype(tf, io_type)
            if output == "logits":
                conv.inference_output_type = _io_tf_dtype(tf, io_type)
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return bytes(conv.convert())
        except EdgeDeeplabError:
            raise
        except Exception as e:  # converter errors are long MLIR dumps; keep the first line
            msg = first_line(e)
            raise EdgeDeeplabError(f"TFLite conversion ({variant}) failed: {msg}") from None


def _tensor_summary(d: dict) -> dict:
    q = d.get("quantization_parameters") or {}
    scales = list(np.asarray(q.get("scales", [])).ravel())
    zps = list(np.asarray(q.get("zero_points", [])).ravel())
    return {
        "name": d.get("name"),
        "shape": [int(s) for s in d.get("shape", [])],
        "dtype": np.dtype(d["dtype"]).name,
        "scale": float(scales[0]) if len(scales) == 1 else None,
        "zero_point": int(zps[0]) if len(zps) == 1 else None,
    }


def _io_details(tflite: bytes):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tflite)
    return _tensor_summary(it.get_input_details()[0]), _tensor_summary(it.get_output_details()[0])


def raw_pixel_check(input_info: dict, mean=NORM_MEAN, std=NORM_STD) -> dict:
    """Whether raw 0..255 pixels may be fed to a uint8 input whose quantization absorbs ``mean/std``.

    Returns:
        ``{"raw_pixels_ok": bool, "max_error": float (in normalized units), "note": str}``.
    """
    scale, zp = input_info.get("scale"), input_info.get("zero_point")
    if input_info.get("dtype") != "uint8" or not scale:
        return {"raw_pixels_ok": False, "max_error": None,
                "note": "input is not uint8-quantized; feed normalized values"}
    from edge_deeplab.core.contract.tflite_metadata.compatibility import raw_pixel_error

    err = raw_pixel_error(scale, zp, mean, std) * scale  # in normalized units
    ok = err <= scale  # within one quantization step
    note = (f"uint8 input: real = {scale:.8g} * (q - {zp}); raw 0..255 pixels can be fed directly "
            f"(max deviation from (p - mean)/std: {err:.3g}, {err / scale:.2f} quantization steps)"
            if ok else
            f"uint8 input: real = {scale:.8g} * (q - {zp}) does not match the normalization; "
            f"quantize normalized values with these parameters")
    return {"raw_pixels_ok": bool(ok), "max_error": err, "note": note}


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def export_tflite(model, out_path, variant: str = "float32", *, io_type: Optional[str] = None,
                  normalize_in_graph: bool = False, output: str = "logits",
                  representative: Optional[Iterable[np.ndarray]] = None,
                  calibration_dataset: Optional[str] = None, data_dir=None,
                  calibration_split: str = "train",
                  calibration_steps: int = DEFAULT_CALIBRATION_STEPS,
                  config: Optional[ModelConfig] = None, metadata: Optional[dict] = None,
                  sidecar: bool = True, keep_float: Sequence[str] = (),
                  labels: Optional[Sequence[str]] = None, head: str = "full") -> dict:
    """Converts a Keras DeepLab model to an edge-clean ``.tflite`` (atomic write + metadata).

    Args:
        model: a ``tf_keras`` model, or a path to ``M.keras`` / a run directory (``qat-int8`` loads
            the run's ``qat/model.keras`` via :func:`edge_deeplab.training.qat.load_qat_model`).
        out_path: destination ``X.tflite`` (the sidecar goes to ``X.json``).
        variant: one of :data:`VARIANTS`.
        io_type: ``float32``, ``uint8`` or ``int8`` (integer variants only; default ``uint8`` for
            them, ``float32`` otherwise).
        normalize_in_graph: the model takes raw 0..255 pixels (see module docstring).
        output: ``"logits"`` (``(1, H, W, C)`` at input size) or ``"classmap"`` (int32 ``(1, H, W)``).
        representative: ``int8`` calibration images: float arrays in [-1, 1] (normalized) or uint8
            pixels, ``(H, W, 3)``; takes precedence over ``calibration_dataset``.
        calibration_dataset, data_dir, calibration_split: calibrate ``int8`` on this dataset
            (:func:`edge_deeplab.data.load_dataset`); else generated scenes are used.
        calibration_steps: number of calibration images.
        config: the model's :class:`ModelConfig` (read from the model's sidecar for paths).
        metadata: extra keys merged into the embedded metadata.
        sidecar: also write ``X.json``.
        keep_float: Keras layer patterns to keep in float (``int8``/``w8a16``; see the module
            docstring).
        labels: class names (default: the config's); their count must match the model's classes.
        head: ``"full"`` (the model's own output) or ``"person"``: the person probability at the
            decoder's 1/4 resolution (:mod:`edge_deeplab.model.portrait_head`; needs ``output``
            ``"logits"``; the model's output kind becomes ``probabilities``, its labels the person's).

    Every variant also carries the standard TFLite metadata (``TFLITE_METADATA``: RGB input with
    NormalizationOptions, labels file, MediaPipe activation; see
    :mod:`edge_deeplab.core.contract.tflite_metadata`), so MediaPipe Tasks / the Task Library load it.

    Returns:
        A dict: ``path``, ``sidecar``, ``variant``, ``size_bytes``, ``metadata``.

    Raises:
        EdgeDeeplabError: unknown variant/io type/output, wrong label count, unloadable model,
            conversion failure.
    """
    if variant not in VARIANTS:
        raise EdgeDeeplabError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if output not in OUTPUTS:
        raise EdgeDeeplabError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
    keep_float = [str(p) for p in (keep_float or ())]
    if keep_float and variant not in KEEP_FLOAT_VARIANTS:
        raise EdgeDeeplabError(f"--keep-float works with variants {' and '.join(KEEP_FLOAT_VARIANTS)}, "
                               f"not {variant}")
    # int16 activations and selective precision go through litert-quantizer.
    scheme = "w8a16" if variant == "w8a16" else ("w8a8" if keep_float else None)
    if io_type is None:
        # w8a16: float I/O by default, because LiteRT's CompiledModel (our default runtime, and
        # the GPU accelerator) has no int16 TensorBuffer; --io-type int16 for interpreter users.
        io_type = ({"w8a16": "float32", "w8a8": "int8"}[scheme] if scheme
                   else "uint8" if variant in INTEGER_VARIANTS else "float32")
    if io_type not in IO_TYPES:
        raise EdgeDeeplabError(f"unknown io type {io_type!r}; choose one of {', '.join(IO_TYPES)}")
    if io_type != "float32" and variant not in INTEGER_VARIANTS:
        raise EdgeDeeplabError(f"io type {io_type} needs an integer variant (int8, qat-int8 or "
                               f"w8a16), not {variant}")
    if scheme:
        from converters.litert_quant import LIMITS, NATIVE_IO

        if io_type not in (NATIVE_IO[scheme], "float32"):
            why = f": {LIMITS['uint8_io']}" if io_type == "uint8" else ""
            what = f"{variant} with --keep-float" if variant == "int8" else variant
            raise EdgeDeeplabError(f"io type {io_type} is not available for {what}{why}; use "
                                   f"{NATIVE_IO[scheme]} or float32")
    elif io_type == "int16":
        raise EdgeDeeplabError(f"io type int16 needs variant w8a16, not {variant}")
    if calibration_steps < 1:
        raise EdgeDeeplabError(f"calibration steps must be >= 1, got {calibration_steps}")
    out_path = Path(out_path)
    if out_path.suffix != ".tflite":
        raise EdgeDeeplabError(f"output path must end in .tflite, got {out_path.name}")

    keras_model, cfg, base_meta, source = _resolve(model, variant, config)
    qat = _is_qat(keras_model)
    if variant == "qat-int8" and not qat:
        raise EdgeDeeplabError("variant qat-int8 needs a quantization-aware model "
                               "(run `edge-deeplab qat` first, or use --variant int8)")
    if variant != "qat-int8" and qat:
        raise EdgeDeeplabError(f"model is quantization-aware; export it with --variant qat-int8, "
                               f"not {variant}")
    if normalize_in_graph and qat:
        raise EdgeDeeplabError("--normalize-in-graph is not supported for qat-int8 (it would add a "
                               "float op before the quantized graph); use uint8 I/O, whose input "
                               "quantization absorbs the normalization")

    norm = normalization_dict(base_meta)
    mean, std = norm["mean"], norm["std"]
    shape = tuple(keras_model.input_shape[1:])
    if len(shape) != 3 or any(d is None for d in shape):
        raise EdgeDeeplabError(f"model input must be a fixed (H, W, C) image, got {keras_model.input_shape}")
    if cfg is not None and tuple(cfg.input_size) != tuple(shape[:2]):
        raise EdgeDeeplabError(f"config input size {tuple(cfg.input_size)} does not match the "
                               f"model's {shape[:2]}")

    labels = _export_labels(labels, cfg, base_meta, keras_model)  # before any conversion work
    head_info = None
    if head != "full":
        from edge_deeplab.model.portrait_head import HEADS, person_head

        if head not in HEADS:
            raise EdgeDeeplabError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        if output != "logits":
            raise EdgeDeeplabError(f"--head {head} replaces the logits output; --output {output} "
                                   f"does not apply")
        keras_model, head_info = person_head(keras_model, labels)
        output, labels = head_info["output"], head_info["labels"]
    conv_model = with_input_normalization(keras_model, mean, std) if normalize_in_graph \
        else keras_model
    if keep_float:
        from converters.litert_quant import check_patterns

        check_patterns(keep_float, [l.name for l in conv_model.layers])  # before any work

    calibration = None
    rep_gen = None
    if variant in ("int8", "w8a16"):
        if representative is not None:
            images, calibration = representative, {"source": "user", "steps": calibration_steps}
        elif calibration_dataset:
            images = dataset_images(calibration_dataset, shape[:2], data_dir=data_dir,
                                    split=calibration_split, steps=calibration_steps)
            calibration = {"source": f"dataset:{calibration_dataset}", "split": calibration_split,
                           "steps": calibration_steps}
        else:
            images = structured_images(calibration_steps, shape[:2])
            calibration = {"source": "generated", "steps": calibration_steps}
        rep_gen = _representative(images, normalize_in_graph, mean, std, calibration_steps, shape)

    quantizer = None
    if scheme:
        from converters.litert_quant import quantize_tflite
        from edge_deeplab.core.contract.metadata import embed_metadata

        tflite = _trace_and_convert(conv_model, "float32", "float32", output, None)
        # The quantizer calibrates through the model's signature, which our metadata step adds
        # (the final metadata replaces this placeholder entry below).
        tflite = embed_metadata(tflite, {}, input_name="image", output_name=output)
        tflite, quantizer = quantize_tflite(
            tflite, scheme, (b[0] for b in rep_gen()), keep_float=keep_float,
            io_type="float32" if io_type == "float32" else None,
            calibration_steps=calibration_steps)
    else:
        tflite = _trace_and_convert(conv_model, variant, io_type, output, rep_gen)
    in_info, out_info = _io_details(tflite)
    in_info["name"], out_info["name"] = "image", output

    meta = dict(base_meta) if base_meta else {}
    if cfg is not None:
        from edge_deeplab.model.model_io import model_metadata

        meta = {**model_metadata(cfg), **{k: v for k, v in meta.items() if k not in ("config",)}}
        meta["config"] = cfg.to_dict()
    meta["labels"] = labels
    if isinstance(meta.get("config"), dict) and head_info is None:
        meta["config"]["labels"] = labels
    if head_info is not None:
        meta["head"] = head_info
    meta.setdefault("format", "edge_deeplab/1")
    meta["normalization"] = {"mean": list(map(float, mean)), "std": list(map(float, std))}
    meta["normalize_in_graph"] = bool(normalize_in_graph)
    meta["input_range"] = "raw pixels 0..255" if normalize_in_graph else \
        "normalized (pixel - mean) / std"
    meta["output"] = output
    from edge_deeplab import __version__

    export = {
        "variant": variant, "io_type": io_type, "output": output,
        "normalize_in_graph": bool(normalize_in_graph),
        "input": in_info, "output_tensor": out_info,
        "source": source, "tool": f"edge_deeplab {__version__}",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if calibration:
        export["calibration"] = calibration
    if quantizer:
        export["quantizer"] = {k: quantizer[k] for k in ("quantizer", "recipe", "scheme")}
        export["float_ops"] = quantizer["float_ops"]
        if quantizer.get("widened_ranges"):
            export["widened_ranges"] = quantizer["widened_ranges"]
        if keep_float:
            export["keep_float"] = {
                "patterns": list(keep_float),
                "layers": sorted({l for ls in quantizer["keep_float"].values() for l in ls})}
    if variant in INTEGER_VARIANTS and io_type == "uint8" and not normalize_in_graph:
        export["raw_pixels"] = raw_pixel_check(in_info, mean, std)
    meta["export"] = export
    if metadata:
        meta.update(metadata)

    from edge_deeplab.core.atomic_io import write_bytes_atomic, write_json_atomic
    from edge_deeplab.core.contract import embed_metadata, sidecar_path

    data = embed_metadata(tflite, meta, input_name="image", output_name=output)
    data = _with_standard_metadata(data, meta, cfg, variant, io_type, output, normalize_in_graph,
                                   mean, std)
    write_bytes_atomic(out_path, data)
    sc = None
    if sidecar:
        sc = write_json_atomic(sidecar_path(out_path), meta)
    return {"path": str(out_path), "sidecar": str(sc) if sc else None, "variant": variant,
            "size_bytes": len(data), "metadata": meta}


def _export_labels(labels, cfg, base_meta: dict, keras_model) -> list:
    """Labels for the export: ``labels`` if given (count checked), else the config's/model's."""
    from edge_deeplab.core.contract.tflite_metadata import check_labels

    n = int(keras_model.output_shape[-1]) if len(keras_model.output_shape) == 4 else None
    if labels is not None:
        return check_labels(labels, n)
    if cfg is not None:
        return list(cfg.resolved_labels())
    if base_meta.get("labels"):
        return [str(x) for x in base_meta["labels"]]
    return [f"class_{i}" for i in range(n or 0)]


_OUTPUT_WORDS = {"logits": "per-pixel logits", "classmap": "int32 class map",
                 "probabilities": "person probability at the logits' resolution (before the final upsample)"}


def _with_standard_metadata(data: bytes, meta: dict, cfg, variant, io_type, output,
                            normalize_in_graph, mean, std) -> bytes:
    """Adds the standard TFLite metadata (what MediaPipe Tasks / Task Library read) to ``data``.

    NormalizationOptions describe what the input tensor expects from 0..255 RGB pixels: mean 0 /
    std 1 for ``normalize_in_graph`` (raw pixels), else the model's mean/std. uint8 inputs get raw
    pixels from MediaPipe; that is right when the input quantization absorbs mean/std (see
    :func:`raw_pixel_check`).
    """
    from edge_deeplab import __version__
    from edge_deeplab.core.contract.tflite_metadata import write_standard_metadata

    arch = (f"DeepLab v3+ MobileNet-v2 (alpha {cfg.alpha}, output stride {cfg.output_stride})"
            if cfg is not None else "segmentation model")
    io = f", {io_type} I/O" if variant in INTEGER_VARIANTS else ""
    desc = (f"{arch}, {variant}{io}, {len(meta['labels'])} classes; output "
            f"{_OUTPUT_WORDS.get(output, output)}; input "
            f"{'raw RGB pixels 0..255' if normalize_in_graph else 'RGB (pixel - mean) / std'}. "
            f"Exported by edge_deeplab {__version__}.")
    m, s = ([0.0], [1.0]) if normalize_in_graph else (list(mean), list(std))
    return write_standard_metadata(
        data, name=str(meta.get("name") or ("DeepLab v3+ MobileNet-v2 segmenter" if cfg is not None
                                             else "edge_deeplab segmenter")), description=desc,
        version=meta["export"]["created"], author=str(meta.get("author") or "edge_deeplab"),
        toolkit_version=__version__, labels=meta["labels"], mean=m, std=s, input_range=None,
        output_kind=output, activation=None, extra_json=meta)


class _DropTrackableObjWarning:
    """A ``logging`` filter for the absl WARNING every ``from_concrete_functions`` call logs
    ("Please consider providing the trackable_obj argument ..."): the conversion path it warns
    about is the one this exporter chose (the traced function, not a SavedModel), so the line
    only adds noise to every successful export."""

    def filter(self, record) -> bool:
        return "trackable_obj argument" not in record.getMessage()


def _without_trackable_obj_warning():
    """A context manager that drops that one warning from the ``absl`` logger."""
    import contextlib
    import logging

    @contextlib.contextmanager
    def quiet():
        logger, flt = logging.getLogger("absl"), _DropTrackableObjWarning()
        logger.addFilter(flt)
        try:
            yield
        finally:
            logger.removeFilter(flt)

    return quiet()
