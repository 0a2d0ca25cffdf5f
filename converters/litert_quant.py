"""int16 activations and selective precision through Google's ``litert-quantizer``.

The TFLite converter's post-training quantizer (:mod:`converters.export`, variant ``int8``) can do
only "all int8". This module quantizes a float32 ``.tflite`` from our exporter with
``litert_quantizer`` (``ai-edge-quantizer``) recipes instead:

=========  ===================================================================================
``w8a16``  int8 weights (per channel), int16 activations (symmetric): recipe ``static_wi8_ai16``
``w8a8``   int8 weights (per channel), int8 activations (asymmetric): recipe ``static_wi8_ai8``
=========  ===================================================================================

Selective precision (``keep_float``): ops whose Keras layer matches a pattern get the library's
``NO_QUANTIZE`` rule and compute in float; the quantizer inserts DEQUANTIZE/QUANTIZE at the
boundaries. A pattern matches an op when it matches one of the Keras layer names found in the op's
output tensor name (see :func:`converters.layer_names.keras_layers`), either as a shell glob (``block_5_*``) or as a
regular expression matched against the whole layer name (``block_(5|6)_.*``). The library's own
rules are regexes searched in the op's *scope* (its output tensor names joined by ``;``); each
matched op is handed to it as an exact, escaped scope so that one pattern never catches more than
:func:`resolve_keep_float` reported.

Calibration runs the float model on real images (a dataset when given, else the project's generated
scenes), fed exactly as the exporter's int8 calibration feeds them, and takes each activation's
global min/max over them, as the TFLite converter does for int8 (see
:func:`calibrate_global_min_max`: the library's own merge is a moving average that clips).

Limits of litert-quantizer 0.11.0 (see :data:`LIMITS`): no uint8 model I/O (its ``static_wi8_au8``
policy entry exists only for INPUT/OUTPUT and its kernels' path is untested here); ops outside its
policy (e.g. ARG_MAX, RELU6 as a separate op, HARD_SWISH for int16) stay float.

Example:
    >>> data, info = quantize_tflite("m_f32.tflite", "w8a16", images)      # doctest: +SKIP
    >>> info["recipe"]                                                      # doctest: +SKIP
    'static_wi8_ai16'
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from converters.layer_names import keras_layers, primary_layer
from edge_deeplab.core.errors import EdgeDeeplabError, first_line

SCHEMES = {"w8a8": "static_wi8_ai8", "w8a16": "static_wi8_ai16"}
#: Native activation dtype of each scheme (the model's I/O type unless ``io_type="float32"``).
NATIVE_IO = {"w8a8": "int8", "w8a16": "int16"}
#: What litert-quantizer 0.11.0 cannot do for us, stated once (the export errors quote it).
LIMITS = {
    "uint8_io": "litert-quantizer 0.11.0 produces int8/int16 (or float32) model I/O, not uint8",
    "calibration_merge": "Quantizer.calibrate merges per-image ranges by a moving average (0.95) and "
                         "takes no update function; calibrate_global_min_max works around it",
}
_GLOB_CHARS = set("*?[")


def _pattern_matcher(pattern: str):
    try:
        rx = re.compile(pattern)
    except re.error:
        rx = None
    glob = any(c in _GLOB_CHARS for c in pattern)

    def match(name: str) -> bool:
        if glob and fnmatch.fnmatchcase(name, pattern):
            return True
        return bool(rx is not None and rx.fullmatch(name))
    if rx is None and not glob:
        raise EdgeDeeplabError(f"--keep-float pattern {pattern!r} is neither a valid glob nor a "
                               f"valid regular expression")
    return match


def _no_match(pattern: str, names: Iterable[str]) -> EdgeDeeplabError:
    names = sorted(set(names))
    sample = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    try:
        re.compile(pattern)
    except re.error as e:  # a glob-looking typo of a regex: say what is wrong with it
        return EdgeDeeplabError(f"--keep-float {pattern!r} is not a valid regular expression "
                                f"({e}) and as a glob it matches no layer of the model (layers "
                                f"look like: {sample})")
    return EdgeDeeplabError(f"--keep-float {pattern!r} matches no layer of the model "
                            f"(layers look like: {sample})")


def check_patterns(patterns: Sequence[str], layer_names: Sequence[str]) -> None:
    """One-line error unless every pattern matches at least one of ``layer_names``.

    Cheap (no conversion): the exporter calls it with the Keras model's layer names before it
    converts or calibrates anything.
    """
    for pat in patterns:
        m = _pattern_matcher(pat)
        if not any(m(n) for n in layer_names):
            raise _no_match(pat, layer_names)


def graph_ops(tflite: Union[bytes, str, Path]) -> List[dict]:
    """The float model's ops in graph order: ``{"index", "op", "outputs": [names], "layers"}``."""
    from ai_edge_litert.interpreter import Interpreter

    data = _read(tflite)
    try:
        it = Interpreter(model_content=data)
    except Exception as e:  # noqa: BLE001
        msg = first_line(e)
        raise EdgeDeeplabError(f"TFLite runtime rejects the model: {msg}") from None
    names = {d["index"]: d["name"] for d in it.get_tensor_details()}
    ops = []
    for d in it._get_ops_details():  # noqa: SLF001 - the only op list the runtime exposes
        outs = [names.get(int(t), "") for t in d["outputs"] if int(t) >= 0]
        layers: List[str] = []
        for n in outs:
            layers += [x for x in keras_layers(n) if x not in layers]
        ops.append({"index": int(d["index"]), "op": d["op_name"], "outputs": outs,
                    "layers": layers})
    return ops


def resolve_keep_float(tflite: Union[bytes, str, Path], patterns: Sequence[str]) -> Dict[str, List[dict]]:
    """Which ops each ``--keep-float`` pattern selects; one-line error for a pattern matching none.

    Returns:
        ``{pattern: [op dicts from :func:`graph_ops`]}`` (graph order).

    Raises:
        EdgeDeeplabError: a pattern matches no op's Keras layer (the message lists a few names).
    """
    ops = graph_ops(tflite)
    out: Dict[str, List[dict]] = {}
    for pat in patterns:
        m = _pattern_matcher(pat)
        hit = [op for op in ops if any(m(l) for l in op["layers"])]
        if not hit:
            raise _no_match(pat, (op["layers"][0] for op in ops if op["layers"]))
        out[pat] = hit
    return out


def _read(tflite) -> bytes:
    from edge_deeplab.core.contract.metadata import load_tflite_bytes

    return load_tflite_bytes(tflite)


def _scope(outputs: Sequence[str]) -> str:
    """The library's op scope (output names joined by ';' plus a trailing ';'), as an exact regex."""
    return "^" + re.escape(";".join(n for n in outputs if n) + ";") + "$"


# --------------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------------

def check_prepares(tflite: bytes, scheme: str = "quantized") -> None:
    """Raises a one-line error naming the layer when TFLite cannot prepare the quantized model.

    TFLite's int16 kernels refuse a requantization multiplier that overflows (``kernel_util.cc:
    no_integer_overflow_from_quantization``): an activation range calibrated too narrow for its
    weights, seen on an untrained default model with few generated calibration images. Without
    this check the export would succeed and every runtime would fail to load the file.
    """
    import re

    from ai_edge_litert.interpreter import Interpreter

    try:
        it = Interpreter(model_content=tflite)
    except Exception as e:  # noqa: BLE001
        raise EdgeDeeplabError(f"the {scheme} model does not load in TFLite: "
                               f"{first_line(e)}") from None
    try:
        it.allocate_tensors()
    except Exception as e:  # noqa: BLE001
        text = str(e)
        m = re.search(r"Node number (\d+) \((\w+)\) failed to prepare", text)
        where = "an op"
        if m:
            ops = it._get_ops_details()  # noqa: SLF001 - op outputs are only exposed here
            idx, name = int(m.group(1)), m.group(2)
            tensor = it._get_tensor_details(ops[idx]["outputs"][0], 0)["name"] \
                if idx < len(ops) and ops[idx]["outputs"] else ""
            where = f"{primary_layer(tensor) or tensor or f'node {idx}'} ({name})"
        why = ("its requantization overflows: an activation range calibrated too narrow for its "
               "weights" if "overflow" in text else first_line(e)[:200])
        layer = where.split(" ")[0]
        raise EdgeDeeplabError(
            f"the {scheme} model does not prepare in TFLite at {where}: {why}; calibrate on real "
            f"images (--calibration-dataset, more --calibration-steps) or keep that layer float "
            f"(--keep-float '{layer}')") from None


def calibrate_global_min_max(quantizer, signature: str, batches: Sequence[dict]) -> dict:
    """Activation ranges over *all* calibration images: the global min and max of every tensor.

    ``Quantizer.calibrate`` (litert-quantizer 0.11.0) merges the per-image ranges with an
    exponential moving average (``qsv_utils.moving_average_update``, smoothing 0.95, fixed: the
    method takes no update function). With one image per step the result is close to the *mean*
    image's range, narrower than the data's: every image with a larger activation is clipped. On
    the trained test model that clipping made w8a16 (int16 activations) agree with Keras on 97.1%
    of pixels, worse than int8 PTQ's 98.2% (whose TFLite calibrator takes the global min/max);
    with the global range here it agrees on 99.3%. Each image is calibrated on its own through the
    public method and the results are merged with ``qsv_utils.min_max_update``.

    Args:
        quantizer: a ``litert_quantizer.Quantizer`` with its recipe set.
        signature: the model's signature key.
        batches: ``[{input_name: (1, H, W, C) float32}, ...]``.

    Returns:
        The calibration result ``{tensor_name: {"min": ..., "max": ...}}`` for ``quantize``.
    """
    from litert_quantizer.utils import qsv_utils

    merged: dict = {}
    for batch in batches:
        for name, qsv in quantizer.calibrate({signature: [batch]}, num_threads=1).items():
            merged[name] = qsv_utils.min_max_update(merged.get(name, {}), qsv)
    return merged


#: The narrowest int16 activation range TFLite's kernels accept, as the largest absolute value
#: (symmetric int16: scale = that / 32767). An op with a fused RELU6 quantizes the bound 6.0 with
#: its output's scale (``kernel_util.cc`` ``Quantize``: ``round(6 / scale)`` must fit an int32,
#: ``no_integer_overflow_from_quantization``), so the scale must be >= 6 / 2^31: a range of at
#: least 6 * 32767 / 2^31 = 9.2e-5, here with a margin. Calibration gives narrower ranges to
#: outputs that are (nearly) constant zero, e.g. dead channels of an untrained model.
MIN_INT16_RANGE = 1e-4


def widen_narrow_ranges(qsv: dict, floor: float = MIN_INT16_RANGE) -> list:
    """Widens, in place, every calibrated range narrower than ``floor`` to ``[-floor, floor]``
    (only the missing side moves: a range already reaching past it keeps that bound); returns
    the widened tensors' names.

    Such a tensor holds values below ``floor`` only, so int16 rounding at ``floor / 32767`` keeps
    them as exactly as the real data allows, while TFLite can prepare its ops.

    Args:
        qsv: a calibration result ``{tensor_name: {"min": ..., "max": ...}}``.
        floor: the smallest largest-absolute-value allowed.

    Example:
        >>> import numpy as np
        >>> q = {"a": {"min": np.array(0.0), "max": np.array(1e-7)}, "b": {"min": -1.0, "max": 2.0}}
        >>> widen_narrow_ranges(q), round(float(q["a"]["max"]), 6), round(float(q["a"]["min"]), 6)
        (['a'], 0.0001, -0.0001)
    """
    widened = []
    for name, rng in qsv.items():
        if not isinstance(rng, dict) or "min" not in rng or "max" not in rng:
            continue
        lo, hi = np.asarray(rng["min"], np.float32), np.asarray(rng["max"], np.float32)
        narrow = np.maximum(np.abs(lo), np.abs(hi)) < floor
        if not narrow.any():
            continue
        rng["min"] = np.where(narrow, np.minimum(lo, -floor), lo).astype(np.float32)
        rng["max"] = np.where(narrow, np.maximum(hi, floor), hi).astype(np.float32)
        widened.append(name)
    return widened


def quantize_tflite(float_tflite: Union[bytes, str, Path], scheme: str,
                    calibration: Iterable[np.ndarray], *, keep_float: Sequence[str] = (),
                    io_type: Optional[str] = None, calibration_steps: int = 100) -> tuple:
    """Quantizes a float32 ``.tflite`` with litert-quantizer.

    Args:
        float_tflite: the float32 model (bytes or path), e.g. from
            :func:`converters.export.export_tflite` ``variant="float32"``.
        scheme: ``"w8a16"`` or ``"w8a8"``.
        calibration: float32 input batches ``(1, H, W, C)`` exactly as the model takes them
            (normalized, or raw pixels for an in-graph-normalization model).
        keep_float: patterns of Keras layers to keep in float (see module docstring); each must
            match at least one op.
        io_type: ``None`` (the scheme's native int8/int16 I/O) or ``"float32"`` (QUANTIZE after
            the input and DEQUANTIZE before the output stay in the graph).
        calibration_steps: at most this many batches are used.

    Returns:
        ``(quantized_bytes, info)``; ``info`` has ``quantizer``, ``recipe``, ``scheme``,
        ``io_type``, ``keep_float`` (``{pattern: [layer, ...]}``), ``float_ops`` (count) and
        ``calibration_steps`` (batches actually used).

    Raises:
        EdgeDeeplabError: unknown scheme/io type, a pattern matching nothing (before any work),
            no calibration data, or the library failing (first line of its message).
    """
    if scheme not in SCHEMES:
        raise EdgeDeeplabError(f"unknown quantization scheme {scheme!r}; choose one of "
                               f"{', '.join(SCHEMES)}")
    if io_type not in (None, NATIVE_IO[scheme], "float32"):
        if io_type == "uint8":
            raise EdgeDeeplabError(f"io type uint8 is not available for {scheme}: {LIMITS['uint8_io']}; "
                                   f"use --io-type {NATIVE_IO[scheme]} or float32")
        raise EdgeDeeplabError(f"io type {io_type} is not available for {scheme}; use "
                               f"{NATIVE_IO[scheme]} or float32")
    data = _read(float_tflite)
    kept = resolve_keep_float(data, keep_float) if keep_float else {}

    try:
        from litert_quantizer import Quantizer, qtyping, recipe
        from litert_quantizer.algorithm_manager import AlgorithmName
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise EdgeDeeplabError(f"litert-quantizer is not installed ({e}); pip install "
                               f"litert-quantizer==0.11.0") from None
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    sigs = it.get_signature_list()
    if len(sigs) != 1:
        raise EdgeDeeplabError(f"expected a model with one signature, found {len(sigs)}")
    sig = next(iter(sigs))
    in_names = sigs[sig]["inputs"]
    if len(in_names) != 1:
        raise EdgeDeeplabError(f"expected a single-input model, found {len(in_names)} inputs")
    in_det = it.get_input_details()[0]
    if np.dtype(in_det["dtype"]) != np.float32:
        raise EdgeDeeplabError(f"{scheme} quantizes a float32 model; its input is "
                               f"{np.dtype(in_det['dtype']).name}")
    shape = tuple(int(s) for s in in_det["shape"])

    batches = []
    for i, x in enumerate(calibration):
        if i >= calibration_steps:
            break
        x = np.asarray(x, np.float32)
        if x.shape == shape[1:]:
            x = x[None]
        if x.shape != shape:
            raise EdgeDeeplabError(f"calibration input {i} has shape {x.shape}, the model "
                                   f"expects {shape}")
        batches.append({in_names[0]: x})
    if not batches:
        raise EdgeDeeplabError("no calibration images")

    rec = getattr(recipe, SCHEMES[scheme])()
    q = Quantizer(data, rec)
    float_scopes = []
    for hits in kept.values():
        for op in hits:
            s = _scope(op["outputs"])
            if s not in float_scopes:
                float_scopes.append(s)
    for s in float_scopes:
        q.update_quantization_recipe(s, qtyping.TFLOperationName.ALL_SUPPORTED, None,
                                     AlgorithmName.NO_QUANTIZE)
    if io_type == "float32":
        for op_name in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            q.update_quantization_recipe(".*", op_name, None, AlgorithmName.NO_QUANTIZE)
    try:
        import contextlib
        import io
        import logging

        logging.getLogger("absl").setLevel(logging.ERROR)
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            qsv = calibrate_global_min_max(q, sig, batches)
            widened = widen_narrow_ranges(qsv) if scheme == "w8a16" else []
            res = q.quantize(qsv, enable_progress_bar=False, enable_progress_report=False)
    except EdgeDeeplabError:
        raise
    except Exception as e:  # noqa: BLE001 - library errors: first line, one line
        msg = first_line(e)
        raise EdgeDeeplabError(f"litert-quantizer ({scheme}) failed: {msg}") from None
    out = bytes(res.quantized_model)
    check_prepares(out, scheme)

    from converters.analyze import float_compute_ops

    info = {
        "quantizer": f"litert-quantizer {_version()}",
        "recipe": SCHEMES[scheme],
        "scheme": scheme,
        "io_type": io_type or NATIVE_IO[scheme],
        "keep_float": {p: sorted({op["layers"][0] for op in hits if op["layers"]})
                       for p, hits in kept.items()},
        "float_ops": len(float_compute_ops(out)),
        "calibration_steps": len(batches),
        "widened_ranges": len(widened),
    }
    return out, info


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("litert-quantizer")
    except Exception:  # noqa: BLE001
        return "unknown"
