"""What is inside a ``.tflite``, and will the mobile GPU run all of it?

:func:`analyze_tflite` parses the flatbuffer (``ai_edge_litert.schema_py_generated``; no TensorFlow)
and reports size, I/O tensors with quantization, the op histogram, the kind of quantization, float
islands in quantized models, and GPU coverage.

GPU coverage is measured with the real LiteRT GPU accelerator (``CompiledModel`` with
``HardwareAccelerator.GPU``, ``is_fully_accelerated()`` and the ops it leaves to the CPU) through
:func:`edge_deeplab.runtime.probe_accelerator`, which runs in a subprocess so that a crashing driver
cannot take the caller down. Only when no GPU accelerator can start here does it fall back to static
rules (``method: "static-rules"``): an op is predicted to fall off the GPU if it is in
:data:`GPU_UNSUPPORTED_OPS` or not in :data:`GPU_SUPPORTED_OPS` (unknown ops count as unsupported). (Dynamic-range models
are accepted: the real accelerator dequantizes their int8 weights.)

Float islands (full-integer models only): an op computing on float activations between quantized
ones, or a QUANTIZE/DEQUANTIZE that is not at the graph's input or output. A clean int8 export has
none: QUANTIZE after the input, DEQUANTIZE/QUANTIZE before the output, integers in between.

Example:
    >>> report = analyze_tflite("model.tflite")          # doctest: +SKIP
    >>> report["ops"]["DEPTHWISE_CONV_2D"], report["gpu"]["fully_accelerated"]   # doctest: +SKIP
    (25, True)
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from edge_deeplab.errors import EdgeDeeplabError

#: Ops the TFLite/LiteRT mobile GPU delegates run (OpenCL/WebGPU/Metal; from the GPU delegate's
#: documented op list). Used only by the static-rules fallback.
GPU_SUPPORTED_OPS = frozenset("""
ABS ADD ARG_MAX ARG_MIN AVERAGE_POOL_2D BATCH_MATMUL CAST CONCATENATION CONV_2D COS CUMSUM
DEPTH_TO_SPACE DEPTHWISE_CONV_2D DEQUANTIZE DIV ELU EQUAL EXP FLOOR FLOOR_DIV FLOOR_MOD
FULLY_CONNECTED GATHER GREATER GREATER_EQUAL HARD_SWISH LEAKY_RELU LESS LESS_EQUAL LOG
LOGICAL_AND LOGISTIC MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL ONE_HOT PACK
PAD PADV2 POW PRELU QUANTIZE REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_N1_TO_1 RESHAPE
RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SELECT SELECT_V2 SIN SLICE SOFTMAX SPACE_TO_DEPTH
SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB SUM TANH TILE TRANSPOSE
TRANSPOSE_CONV
""".split())
#: Ops the mobile GPU delegate is known to refuse (each one splits the graph into CPU/GPU partitions).
GPU_UNSUPPORTED_OPS = frozenset("""
SPACE_TO_BATCH_ND BATCH_TO_SPACE_ND CUSTOM FLEX WHILE IF CALL_ONCE NON_MAX_SUPPRESSION_V4
NON_MAX_SUPPRESSION_V5 TOPK_V2 UNIQUE WHERE SCATTER_ND SEGMENT_SUM EMBEDDING_LOOKUP
""".split())
#: Ops that have dynamic-range (int8 weights, float activations) kernels.
_HYBRID_CAPABLE = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV",
                             "BATCH_MATMUL"})
_QDQ = ("QUANTIZE", "DEQUANTIZE")
_INT_ACT = ("INT8", "UINT8", "INT16")
_FLOAT = ("FLOAT32", "FLOAT16")


def _enum_names(cls) -> Dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


class _Graph:
    """Plain-python view of subgraph 0 of a TFLite flatbuffer."""

    def __init__(self, data: bytes, what: str):
        from ai_edge_litert import schema_py_generated as schema

        from converters.metadata import parse_model

        model = parse_model(data, what)
        op_names = _enum_names(schema.BuiltinOperator)
        type_names = _enum_names(schema.TensorType)
        try:
            self.opcodes = []
            for i in range(model.OperatorCodesLength()):
                oc = model.OperatorCodes(i)
                code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
                name = op_names.get(code, f"UNKNOWN_{code}")
                if name == "CUSTOM":
                    cc = oc.CustomCode()
                    name = f"CUSTOM:{cc.decode('utf-8', 'replace')}" if cc else "CUSTOM"
                self.opcodes.append(name)
            buffers_with_data = set()
            for i in range(model.BuffersLength()):
                b = model.Buffers(i)
                if b.DataLength() > 0 or b.Size() > 0:
                    buffers_with_data.add(i)
            self.num_subgraphs = model.SubgraphsLength()
            sg = model.Subgraphs(0)
            self.tensors = []
            for i in range(sg.TensorsLength()):
                t = sg.Tensors(i)
                q = t.Quantization()
                scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else np.zeros(0)
                zps = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else np.zeros(0)
                self.tensors.append({
                    "name": (t.Name() or b"").decode("utf-8", "replace"),
                    "shape": [int(s) for s in (t.ShapeAsNumpy() if t.ShapeLength() else [])],
                    "dtype": type_names.get(t.Type(), f"TYPE_{t.Type()}"),
                    "const": t.Buffer() in buffers_with_data,
                    "variable": bool(t.IsVariable()),
                    "scales": np.asarray(scales, np.float64).ravel(),
                    "zero_points": np.asarray(zps, np.int64).ravel(),
                })
            self.inputs = [int(i) for i in (sg.InputsAsNumpy() if sg.InputsLength() else [])]
            self.outputs = [int(i) for i in (sg.OutputsAsNumpy() if sg.OutputsLength() else [])]
            self.ops = []
            for i in range(sg.OperatorsLength()):
                op = sg.Operators(i)
                idx = op.OpcodeIndex()
                if idx >= len(self.opcodes):
                    raise ValueError(f"operator {i} has opcode index {idx} out of range")
                ins = [int(x) for x in (op.InputsAsNumpy() if op.InputsLength() else []) if x >= 0]
                outs = [int(x) for x in (op.OutputsAsNumpy() if op.OutputsLength() else []) if x >= 0]
                for t in ins + outs:
                    if t >= len(self.tensors):
                        raise ValueError(f"operator {i} refers to tensor {t} out of range")
                self.ops.append({"index": i, "name": self.opcodes[idx], "inputs": ins,
                                 "outputs": outs})
        except EdgeDeeplabError:
            raise
        except Exception as e:  # noqa: BLE001 - truncated/garbage tables
            raise EdgeDeeplabError(f"corrupt or truncated TFLite model {what}: {e}") from None

    def is_activation(self, t: int) -> bool:
        x = self.tensors[t]
        return not x["const"] or x["variable"]

    def activation_types(self, op) -> List[str]:
        return [self.tensors[t]["dtype"] for t in op["inputs"] + op["outputs"]
                if self.is_activation(t)]


def _tensor_info(g: _Graph, t: int) -> dict:
    x = g.tensors[t]
    s, z = x["scales"], x["zero_points"]
    info = {"name": x["name"], "shape": x["shape"], "dtype": x["dtype"].lower(),
            "scale": None, "zero_point": None}
    if len(s) == 1 and s[0] != 0:
        info["scale"] = float(s[0])
        info["zero_point"] = int(z[0]) if len(z) else 0
    elif len(s) > 1:
        info["scale"] = [float(v) for v in s]
        info["zero_point"] = [int(v) for v in z]
    return info


def quantization_kind(g: _Graph) -> str:
    """``float32``, ``float16``, ``dynamic-range``, ``full-integer`` or ``mixed``."""
    compute = [op for op in g.ops if op["name"] not in _QDQ]
    int_ops = [op for op in compute if any(d in _INT_ACT for d in g.activation_types(op))]
    float_ops = [op for op in compute if any(d in _FLOAT for d in g.activation_types(op))]
    if int_ops and not float_ops:
        return "full-integer"
    if int_ops and float_ops:
        return "mixed"
    if any(_is_hybrid(g, op) for op in compute):
        return "dynamic-range"
    if any(op["name"] == "DEQUANTIZE" and g.tensors[op["inputs"][0]]["dtype"] == "FLOAT16"
           for op in g.ops if op["inputs"]):
        return "float16"
    return "float32"


def _is_hybrid(g: _Graph, op) -> bool:
    if op["name"] not in _HYBRID_CAPABLE:
        return False
    acts = g.activation_types(op)
    consts = [g.tensors[t]["dtype"] for t in op["inputs"] if not g.is_activation(t)]
    return any(d in _FLOAT for d in acts) and any(d in _INT_ACT for d in consts)


def find_float_islands(g: _Graph) -> List[dict]:
    """Float ops between quantized ones, and QUANTIZE/DEQUANTIZE away from the graph I/O.

    Only meaningful for full-integer/mixed models; returns ``[]`` for float and dynamic-range ones.
    """
    kind = quantization_kind(g)
    if kind not in ("full-integer", "mixed"):
        return []
    gin, gout = set(g.inputs), set(g.outputs)
    islands = []
    for op in g.ops:
        name = op["name"]
        if name in _QDQ:
            src = op["inputs"][0] if op["inputs"] else None
            at_input = src in gin
            at_output = any(t in gout for t in op["outputs"])
            if src is not None and not g.is_activation(src):
                continue  # dequantized constant (weights), not an activation conversion
            if not (at_input or at_output):
                islands.append({"index": op["index"], "op": name,
                                "reason": f"{name} inside the graph (not at its input/output)",
                                "tensors": [g.tensors[t]["name"] for t in op["outputs"]]})
            continue
        floats = [t for t in op["inputs"] + op["outputs"]
                  if g.is_activation(t) and g.tensors[t]["dtype"] in _FLOAT]
        if floats:
            islands.append({"index": op["index"], "op": name,
                            "reason": "computes on float activations in a quantized model",
                            "tensors": [g.tensors[t]["name"] for t in floats]})
    return islands


def static_gpu_rules(g: _Graph) -> List[str]:
    """Ops (sorted names) the mobile GPU delegate is predicted to refuse."""
    bad = set()
    for op in g.ops:
        name = op["name"]
        if name in GPU_UNSUPPORTED_OPS or name.startswith("CUSTOM") or name not in GPU_SUPPORTED_OPS:
            bad.add(name)
    if g.num_subgraphs > 1:
        bad.add("control flow (multiple subgraphs)")
    return sorted(bad)


def _gpu_coverage(path: str, g: _Graph, timeout: float) -> dict:
    probe = None
    error = None
    try:
        from edge_deeplab.runtime import probe_accelerator

        probe = probe_accelerator(path, "gpu", timeout=timeout)
    except ImportError as e:  # pragma: no cover - runtime module always ships
        error = f"runtime unavailable: {e}"
    if probe and probe.get("available"):
        return {"method": "litert-gpu", "fully_accelerated": probe.get("fully_accelerated"),
                "unsupported_ops": sorted(probe.get("unsupported_ops") or []),
                "error": probe.get("error"),
                "gpu_ops": probe.get("gpu_ops"), "cpu_ops": probe.get("cpu_ops")}
    if probe:
        error = probe.get("error") or "GPU accelerator not available"
    bad = static_gpu_rules(g)
    return {"method": "static-rules", "fully_accelerated": not bad, "unsupported_ops": bad,
            "error": error}


def analyze_tflite(path, gpu: bool = True, timeout: float = 600) -> dict:
    """Size, I/O, op histogram, quantization, float islands and GPU coverage of a ``.tflite``.

    Args:
        path: the model file.
        gpu: measure GPU coverage (real LiteRT GPU accelerator in a subprocess; static rules
            where none starts). ``False`` skips it (``report["gpu"]`` is then ``None``).
        timeout: seconds allowed for the GPU probe.

    Returns:
        ``{"path", "size_bytes", "inputs": [..], "outputs": [..], "ops": {name: count},
        "num_ops", "quantization", "float_islands": [..], "metadata": dict|None,
        "gpu": {"method", "fully_accelerated", "unsupported_ops", "error"} | None}``; each I/O entry
        has ``name``, ``shape``, ``dtype``, ``scale``, ``zero_point``.

    Raises:
        EdgeDeeplabError: missing, empty, truncated or garbage file.
    """
    from converters.metadata import _load_bytes, read_tflite_metadata

    p = Path(path)
    data = _load_bytes(p)
    g = _Graph(data, str(p))
    # The interpreter validates what the schema walk cannot (buffer sizes, op versions).
    try:
        from ai_edge_litert.interpreter import Interpreter

        Interpreter(model_content=data)
    except Exception as e:  # noqa: BLE001
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgeDeeplabError(f"TFLite runtime rejects {p}: {msg}") from None
    try:
        meta = read_tflite_metadata(data)
    except EdgeDeeplabError:
        meta = None
    standard, compat = _standard_metadata(data)
    report = {
        "path": str(p),
        "size_bytes": len(data),
        "inputs": [_tensor_info(g, t) for t in g.inputs],
        "outputs": [_tensor_info(g, t) for t in g.outputs],
        "ops": dict(Counter(op["name"] for op in g.ops)),
        "num_ops": len(g.ops),
        "num_subgraphs": g.num_subgraphs,
        "quantization": quantization_kind(g),
        "float_islands": find_float_islands(g),
        "metadata": meta,
        "standard_metadata": standard,
        "mediapipe": compat,
        "gpu": _gpu_coverage(str(p), g, timeout) if gpu else None,
    }
    return report


def _standard_metadata(data: bytes):
    """``(standard metadata dict | {"error": line} | None, MediaPipe compatibility dict)``."""
    import dataclasses

    from edge_deeplab.core.contract.tflite_metadata import (mediapipe_compatibility,
                                                            read_standard_metadata)

    try:
        std = read_standard_metadata(data)
        standard = dataclasses.asdict(std) if std is not None else None
        if standard is not None:
            standard.pop("extra_json", None)  # the same JSON as report["metadata"]
    except EdgeDeeplabError as e:
        std, standard = None, {"error": str(e).replace(" in model bytes", "")}
    compat = mediapipe_compatibility(data, metadata=std) if standard is None or "error" not in standard \
        else mediapipe_compatibility(data)
    return standard, compat.to_dict()


def _format_standard(r: dict) -> List[str]:
    std, mp = r.get("standard_metadata"), r.get("mediapipe")
    lines = []
    if std is None:
        lines.append("  standard metadata: none (no TFLITE_METADATA)")
    elif "error" in std:
        lines.append(f"  standard metadata: {std['error']}")
    else:
        labels = std.get("labels") or []
        shown = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
        norm = (f"mean={_fmt_vals(std['mean'])} std={_fmt_vals(std['std'])}"
                if std.get("mean") is not None else "none")
        lines.append(f"  standard metadata: {std.get('name')!r} version {std.get('version')}")
        lines.append(f"    input: {std.get('input_color_space') or '?'} image, normalization {norm}")
        lines.append(f"    labels ({len(labels)}): {shown or 'none'}; activation "
                     f"{std.get('activation') or 'not set'}; output {std.get('output_kind') or '?'}")
    if mp is not None:
        if mp["accepted"]:
            lines.append("  MediaPipe Tasks ImageSegmenter: accepts this model")
        else:
            lines.append("  MediaPipe Tasks ImageSegmenter: refuses it: " + "; ".join(mp["problems"]))
        for w in mp["warnings"]:
            lines.append(f"    note: {w}")
        if mp["task_library_accepted"] != mp["accepted"]:
            lines.append("  TFLite Task Library ImageSegmenter: " + (
                "accepts" if mp["task_library_accepted"] else
                "refuses it: " + "; ".join(mp["task_library_problems"])))
    return lines


def _fmt_vals(v) -> str:
    v = [float(x) for x in v]
    return f"{v[0]:g}" if len(set(v)) == 1 else "[" + ", ".join(f"{x:g}" for x in v) + "]"


def format_report(r: dict) -> str:
    """Human-readable table of an :func:`analyze_tflite` report."""
    lines = [f"{r['path']}  ({r['size_bytes'] / 1e6:.2f} MB, {r['num_ops']} ops, "
             f"{r['quantization']})"]

    def q(t):
        if t["scale"] is None:
            return ""
        if isinstance(t["scale"], list):
            return f"  per-channel ({len(t['scale'])} scales)"
        return f"  scale={t['scale']:.6g} zero_point={t['zero_point']}"

    for kind in ("inputs", "outputs"):
        for t in r[kind]:
            lines.append(f"  {kind[:-1]:<7} {t['name']:<24} {str(t['shape']):<20} {t['dtype']:<8}{q(t)}")
    lines.append("  ops:")
    for name, n in sorted(r["ops"].items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"    {name:<28} {n:>5}")
    if r["quantization"] in ("full-integer", "mixed"):
        if r["float_islands"]:
            lines.append(f"  float islands: {len(r['float_islands'])}")
            for f in r["float_islands"][:20]:
                lines.append(f"    #{f['index']} {f['op']}: {f['reason']}")
        else:
            lines.append("  float islands: none (QUANTIZE/DEQUANTIZE only at the graph I/O)")
    meta = r.get("metadata") or {}
    if meta:
        ex = meta.get("export", {})
        lines.append(f"  metadata: {len(meta.get('labels', []))} labels, output={meta.get('output')}, "
                     f"variant={ex.get('variant')}, normalize_in_graph={meta.get('normalize_in_graph')}")
        rp = ex.get("raw_pixels")
        if rp:
            lines.append(f"    {rp['note']}")
    lines.extend(_format_standard(r))
    g = r.get("gpu")
    if g is not None:
        how = "LiteRT GPU accelerator" if g["method"] == "litert-gpu" else "static rules (no GPU here)"
        if g["fully_accelerated"]:
            lines.append(f"  GPU: fully accelerated ({how})")
        else:
            lines.append(f"  GPU: NOT fully accelerated ({how}); falls back: "
                         f"{', '.join(g['unsupported_ops']) or 'unknown ops'}")
        if g.get("error"):
            lines.append(f"    note: {g['error']}")
    return "\n".join(lines)
