"""Keras DeepLab -> TFLite, edge-clean: one dilated DEPTHWISE_CONV_2D per atrous conv, BN folded.

Variants (``variant=``; the rows of :data:`edge_deeplab.core.contract.variants.TABLE`, whose
``converter`` names the function of :data:`CONVERTERS` that builds each):

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
from typing import Iterable, Optional, Sequence

import numpy as np

from converters.calibration import dataset_images, representative_dataset, structured_images
from edge_deeplab.core.contract import variants
from edge_deeplab.core.contract.semantics import NORM_MEAN, NORM_STD, normalization_dict
from edge_deeplab.core.contract.variants import EXPORT_OUTPUTS, IO_TYPES, Variant
from edge_deeplab.core.errors import EdgeDeeplabError, first_line
from edge_deeplab.model.config import ModelConfig

DEFAULT_CALIBRATION_STEPS = 100
#: Layer name of the in-graph normalization (1x1 DepthwiseConv2D with bias).
NORMALIZATION_LAYER = "input_normalization"


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


def _resolve(model, row: Variant, config: Optional[ModelConfig]):
    """Model object or path -> (keras model, config or None, base metadata, source path)."""
    if not isinstance(model, (str, os.PathLike)):
        return model, config, {}, None
    from edge_deeplab.model import model_io

    if row.qat:
        from edge_deeplab.model.qat_io import load_qat_model

        m, cfg, meta = load_qat_model(model)
    else:
        p = model_io.resolve_model_path(model)
        try:
            m, cfg, meta = model_io.load_model(p)
        except EdgeDeeplabError as e:
            if "Quantize" in str(e):
                raise EdgeDeeplabError(f"{p} is a quantization-aware model; export it with "
                                       f"--variant {' or '.join(variants.where(qat=True))}") from None
            raise
    return m, (config or cfg), meta, str(model)


def _io_tf_dtype(tf, io_type):
    return {"float32": tf.float32, "uint8": tf.uint8, "int8": tf.int8}[io_type]


def _trace_and_convert(model, row: Variant, io_type: str, output: str, representative_gen):
    """The ``tflite`` converter path: TFLiteConverter on the traced model, options from ``row``."""
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
        _set_quantization(conv, tf, row, io_type, output, representative_gen)
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return bytes(conv.convert())
        except EdgeDeeplabError:
            raise
        except Exception as e:  # converter errors are long MLIR dumps; keep the first line
            msg = first_line(e)
            raise EdgeDeeplabError(f"TFLite conversion ({row.name}) failed: {msg}") from None


def _set_quantization(conv, tf, row: Variant, io_type: str, output: str, representative_gen) -> None:
    """The TFLiteConverter's quantization options, from the variant's row: every quantization-type
    decision of the ``tflite`` path is here.

    Quantized weights (float16 or int8) -> ``Optimize.DEFAULT`` (float16: ``supported_types``);
    calibrated integer activations -> the representative dataset and int8-only builtins; integer
    activations -> the I/O types (a class map's int32 output keeps its type).
    """
    if row.weights != "float32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if row.weights == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if row.integer and row.calibrated:
        conv.representative_dataset = representative_gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if row.integer:
        conv.inference_input_type = _io_tf_dtype(tf, io_type)
        if output == "logits":
            conv.inference_output_type = _io_tf_dtype(tf, io_type)


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
            the run's ``qat/model.keras`` via :func:`edge_deeplab.model.qat_io.load_qat_model`).
        out_path: destination ``X.tflite`` (the sidecar goes to ``X.json``).
        variant: a name (or alias) of the table of variants,
            :data:`edge_deeplab.core.contract.variants.TABLE`; its row decides the converter path
            (:data:`CONVERTERS`), calibration, and the I/O types allowed.
        io_type: one of the row's I/O types (default: its first; ``int8`` for ``int8`` with
            ``keep_float``, which litert-quantizer builds).
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
    row = variants.get(variant)
    variant = row.name
    if output not in EXPORT_OUTPUTS:
        raise EdgeDeeplabError(f"unknown output {output!r}; choose one of {', '.join(EXPORT_OUTPUTS)}")
    keep_float = [str(p) for p in (keep_float or ())]
    if keep_float and not row.keep_float:
        raise EdgeDeeplabError(f"--keep-float works with variants "
                               f"{' and '.join(variants.where(keep_float=True))}, not {variant}")
    # Selective precision goes through litert-quantizer whatever the row's own path.
    path = "litert-quantizer" if keep_float else row.converter
    io_type = _check_io_type(row, path, io_type)
    if calibration_steps < 1:
        raise EdgeDeeplabError(f"calibration steps must be >= 1, got {calibration_steps}")
    out_path = Path(out_path)
    if out_path.suffix != ".tflite":
        raise EdgeDeeplabError(f"output path must end in .tflite, got {out_path.name}")

    keras_model, cfg, base_meta, source = _resolve(model, row, config)
    qat = _is_qat(keras_model)
    if row.qat and not qat:
        raise EdgeDeeplabError(f"variant {variant} needs a quantization-aware model "
                               "(run `edge-deeplab qat` first, or use --variant int8)")
    if qat and not row.qat:
        raise EdgeDeeplabError(f"model is quantization-aware; export it with --variant "
                               f"{' or '.join(variants.where(qat=True))}, not {variant}")
    if normalize_in_graph and qat:
        raise EdgeDeeplabError(f"--normalize-in-graph is not supported for {variant} (it would add a "
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
    if row.calibrated:
        if representative is not None:
            images, calibration = representative, {"source": "user", "steps": calibration_steps}
        elif calibration_dataset:
            images = dataset_images(calibration_dataset, data_dir=data_dir,
                                    split=calibration_split, steps=calibration_steps)
            calibration = {"source": f"dataset:{calibration_dataset}", "split": calibration_split,
                           "steps": calibration_steps}
        else:
            images = structured_images(calibration_steps, shape[:2])
            calibration = {"source": "generated", "steps": calibration_steps}
        # The metadata the export will carry (the model's own, its ``input_geometry`` above all,
        # then the caller's extra keys), so calibration places the images exactly as every
        # runtime will.
        rep_gen = representative_dataset(images, shape, {**(base_meta or {}), **(metadata or {}),
                                                         "normalization": norm,
                                                         "normalize_in_graph": normalize_in_graph},
                                         calibration_steps)

    tflite, quantizer = CONVERTERS[path](conv_model, row, io_type, output, rep_gen, keep_float,
                                         calibration_steps)
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
    if row.integer and io_type == "uint8" and not normalize_in_graph:
        export["raw_pixels"] = raw_pixel_check(in_info, mean, std)
    meta["export"] = export
    if metadata:
        meta.update(metadata)

    from edge_deeplab.core.atomic_io import write_bytes_atomic, write_json_atomic
    from edge_deeplab.core.contract import embed_metadata, sidecar_path

    data = embed_metadata(tflite, meta, input_name="image", output_name=output)
    data = _with_standard_metadata(data, meta, cfg, row, io_type, output, normalize_in_graph,
                                   mean, std)
    write_bytes_atomic(out_path, data)
    sc = None
    if sidecar:
        sc = write_json_atomic(sidecar_path(out_path), meta)
    return {"path": str(out_path), "sidecar": str(sc) if sc else None, "variant": variant,
            "size_bytes": len(data), "metadata": meta}


def _check_io_type(row: Variant, path: str, io_type: Optional[str]) -> str:
    """The export's I/O type: ``io_type`` checked against the row (and the converter path), or the
    default; a one-line error naming what would work otherwise."""
    if io_type is not None and io_type not in IO_TYPES:
        raise EdgeDeeplabError(f"unknown io type {io_type!r}; choose one of {', '.join(IO_TYPES)}")
    if io_type is not None and io_type not in row.io_types:
        takers = [v.name for v in variants.TABLE if io_type in v.io_types]
        if not row.integer:
            raise EdgeDeeplabError(f"io type {io_type} needs an integer variant "
                                   f"({' or '.join(takers)}), not {row.name}")
        raise EdgeDeeplabError(f"io type {io_type} needs variant {' or '.join(takers)}, not {row.name}")
    if path != "litert-quantizer":
        return io_type or row.default_io
    from converters.litert_quant import LIMITS, NATIVE_IO

    native = NATIVE_IO[_quantizer_scheme(row)]
    if io_type is None:
        return row.default_io if row.default_io in (native, "float32") else native
    if io_type not in (native, "float32"):
        why = f": {LIMITS['uint8_io']}" if io_type == "uint8" else ""
        what = f"{row.name} with --keep-float" if row.converter != path else row.name
        raise EdgeDeeplabError(f"io type {io_type} is not available for {what}{why}; use "
                               f"{native} or float32")
    return io_type


def _quantizer_scheme(row: Variant) -> str:
    """litert-quantizer's scheme for the row's activations (:data:`converters.litert_quant.SCHEMES`)."""
    return {"int8": "w8a8", "int16": "w8a16"}[row.activations]


def _convert_tflite(model, row: Variant, io_type: str, output: str, rep_gen, keep_float,
                    calibration_steps: int):
    """Converter path ``tflite``: the TFLiteConverter, configured from the row."""
    return _trace_and_convert(model, row, io_type, output, rep_gen), None


def _convert_litert_quantizer(model, row: Variant, io_type: str, output: str, rep_gen, keep_float,
                              calibration_steps: int):
    """Converter path ``litert-quantizer``: float32 TFLite, then Google's quantizer (int16
    activations, selective precision)."""
    from converters.litert_quant import quantize_tflite
    from edge_deeplab.core.contract.metadata import embed_metadata

    tflite = _trace_and_convert(model, variants.get("float32"), "float32", output, None)
    # The quantizer calibrates through the model's signature, which our metadata step adds
    # (the final metadata replaces this placeholder entry).
    tflite = embed_metadata(tflite, {}, input_name="image", output_name=output)
    return quantize_tflite(tflite, _quantizer_scheme(row), (b[0] for b in rep_gen()),
                           keep_float=keep_float, io_type="float32" if io_type == "float32" else None,
                           calibration_steps=calibration_steps)


#: Converter path name (:attr:`edge_deeplab.core.contract.variants.Variant.converter`) -> function
#: ``(keras model, row, io type, output, calibration generator, keep_float, calibration steps) ->
#: (tflite bytes, quantizer info or None)``.
CONVERTERS = {"tflite": _convert_tflite, "litert-quantizer": _convert_litert_quantizer}


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


def _with_standard_metadata(data: bytes, meta: dict, cfg, row, io_type, output,
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
    io = f", {io_type} I/O" if row.integer else ""
    desc = (f"{arch}, {row.name}{io}, {len(meta['labels'])} classes; output "
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
