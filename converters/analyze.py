"""What is inside a ``.tflite``, and will the mobile GPU run all of it?

:func:`analyze_tflite` parses the flatbuffer (the contract's reader,
:mod:`edge_deeplab.core.contract.tflite_reader`; op names from ``ai_edge_litert.schema_py_generated``;
no TensorFlow) and reports size, I/O tensors with quantization, the op histogram, the kind of
quantization, float islands in quantized models, and GPU coverage.

GPU coverage is measured with the real LiteRT GPU accelerator (``CompiledModel`` with
``HardwareAccelerator.GPU``, ``is_fully_accelerated()`` and the ops it leaves to the CPU) through
:func:`edge_deeplab.runtime.probe_accelerator`, which runs in a subprocess so that a crashing driver
cannot take the caller down. Only when no GPU accelerator can start here does it fall back to static
rules (``method: "static-rules"``): an op is predicted to fall off the GPU if it is in
:data:`GPU_UNSUPPORTED_OPS` or not in :data:`GPU_SUPPORTED_OPS` (unknown ops count as unsupported). (Dynamic-range models
are accepted: the real accelerator dequantizes their int8 weights.)

CPU coverage is measured with the real XNNPACK delegate (:func:`xnnpack_coverage`): the ops it does
not take run on TFLite's reference kernels (all int16-activation ops of a w8a16 model; the
uint8<->int8 QUANTIZEs of a uint8-I/O int8 model). ``scheme`` names the activation precision
(``w8a8``, ``w8a16``, ``+float`` for selective precision) and ``float_layers`` the Keras layers
computing in float in a quantized model.

Float islands (full-integer models only): an op computing on float activations between quantized
ones, or a QUANTIZE/DEQUANTIZE that is not at the graph's input or output. A clean int8 export has
none: QUANTIZE after the input, DEQUANTIZE/QUANTIZE before the output, integers in between.

Example:
    >>> report = analyze_tflite("model.tflite")          # doctest: +SKIP
    >>> report["ops"]["DEPTHWISE_CONV_2D"], report["gpu"]["fully_accelerated"]   # doctest: +SKIP
    (25, True)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Dict, List

import numpy as np

from edge_deeplab.core.contract import variants
from edge_deeplab.core.errors import EdgeDeeplabError, first_line

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


class Graph:
    """Plain-python view of subgraph 0 of a TFLite flatbuffer."""

    def __init__(self, data: bytes, what: str):
        from ai_edge_litert import schema_py_generated as schema

        from edge_deeplab.core.contract.metadata import parse_model

        model = parse_model(data, what)
        op_names = _enum_names(schema.BuiltinOperator)
        try:
            self.opcodes = []
            for oc in model.operator_codes:
                name = op_names.get(oc.code, f"UNKNOWN_{oc.code}")
                if name == "CUSTOM":
                    name = f"CUSTOM:{oc.custom_code}" if oc.custom_code else "CUSTOM"
                self.opcodes.append(name)
            buffers_with_data = {i for i, b in enumerate(model.buffers) if b.has_data}
            self.num_subgraphs = len(model.subgraphs)
            sg = model.subgraphs[0]
            self.tensors = []
            for t in sg.tensors:
                q = t.quantization
                self.tensors.append({
                    "name": t.name,
                    "shape": [int(s) for s in t.shape],
                    "dtype": t.dtype.upper(),
                    "const": t.buffer in buffers_with_data,
                    "variable": t.is_variable,
                    "scales": np.asarray(q.scale if q else (), np.float64).ravel(),
                    "zero_points": np.asarray(q.zero_point if q else (), np.int64).ravel(),
                })
            self.inputs = [int(i) for i in sg.inputs]
            self.outputs = [int(i) for i in sg.outputs]
            self.ops = []
            for i, op in enumerate(sg.operators):
                idx = op.opcode_index
                if idx >= len(self.opcodes):
                    raise ValueError(f"operator {i} has opcode index {idx} out of range")
                ins = [int(x) for x in op.inputs if x >= 0]
                outs = [int(x) for x in op.outputs if x >= 0]
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


def _tensor_info(g: Graph, t: int) -> dict:
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


def quantization_kind(g: Graph) -> str:
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


def _is_hybrid(g: Graph, op) -> bool:
    if op["name"] not in _HYBRID_CAPABLE:
        return False
    acts = g.activation_types(op)
    consts = [g.tensors[t]["dtype"] for t in op["inputs"] if not g.is_activation(t)]
    return any(d in _FLOAT for d in acts) and any(d in _INT_ACT for d in consts)


def xnnpack_reference_ops(g: Graph) -> List[dict]:
    """Ops XNNPACK leaves to TFLite's reference kernels, by rule: uint8 <-> int8 QUANTIZE.

    XNNPACK (LiteRT's CPU path) has no uint8 QUANTIZE, so a full-integer model with uint8 I/O (what
    MediaPipe Tasks and the Task Library feed) runs its two edge conversions outside XNNPACK, on
    reference kernels. LiteRT's own ``is_fully_accelerated()`` on CPU agrees (the tests check it).
    On the default 512x512 model that costs about 6 ms of ~78 ms on a 2-core AVX2 machine
    (``benchmarks/README.md``); ``--io-type int8`` keeps the whole graph in XNNPACK.
    """
    out = []
    for op in g.ops:
        if op["name"] != "QUANTIZE":
            continue
        types = [g.tensors[t]["dtype"] for t in op["inputs"][:1] + op["outputs"][:1]]
        if "UINT8" in types:
            out.append({"index": op["index"], "op": "QUANTIZE",
                        "reason": f"{types[0].lower()} -> {types[-1].lower()} (no uint8 QUANTIZE in "
                                  f"XNNPACK)"})
    return out


def find_float_islands(g: Graph) -> List[dict]:
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


def _graph_of(path_or_bytes, what: str = "") -> Graph:
    from edge_deeplab.core.contract.metadata import load_tflite_bytes

    if isinstance(path_or_bytes, Graph):
        return path_or_bytes
    data = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) \
        else load_tflite_bytes(Path(path_or_bytes))
    return Graph(bytes(data), what or ("<bytes>" if isinstance(path_or_bytes, (bytes, bytearray))
                                        else str(path_or_bytes)))


def model_quantization(path_or_bytes) -> str:
    """:func:`quantization_kind` of a ``.tflite`` file or flatbuffer bytes."""
    return quantization_kind(_graph_of(path_or_bytes))


def activation_dtypes(g: Graph) -> Dict[str, int]:
    """How many compute ops (not QUANTIZE/DEQUANTIZE) produce each activation dtype."""
    c: Counter = Counter()
    for op in g.ops:
        if op["name"] in _QDQ:
            continue
        for t in op["outputs"]:
            if g.is_activation(t):
                c[g.tensors[t]["dtype"].lower()] += 1
    return dict(c)


def quantization_scheme(g: Graph) -> str:
    """``w8a8``, ``w8a16``, ``w8a8+w8a16`` for integer graphs, with ``+float`` when some ops stay
    float (selective precision); otherwise the :func:`quantization_kind`."""
    kind = quantization_kind(g)
    if kind not in ("full-integer", "mixed"):
        return kind
    acts = activation_dtypes(g)
    parts = [s for s, dts in (("w8a8", ("int8", "uint8")), ("w8a16", ("int16",)))
             if any(acts.get(d) for d in dts)]
    if kind == "mixed":
        parts.append("float")
    return "+".join(parts) or kind


def float_compute_ops(path_or_bytes) -> List[dict]:
    """Ops of a quantized model that compute on float activations, in graph order.

    Each entry: ``{"index", "op", "tensor", "layer"}`` (``layer``: the Keras layer parsed from the
    output tensor name, see :func:`converters.layer_names.primary_layer`). Empty for models with
    no integer activations (float, float16, dynamic-range): there every op is float by design.
    """
    from converters.layer_names import primary_layer

    g = _graph_of(path_or_bytes)
    if quantization_kind(g) not in ("full-integer", "mixed"):
        return []
    out = []
    for op in g.ops:
        if op["name"] in _QDQ:
            continue
        if any(g.tensors[t]["dtype"] in _FLOAT for t in op["outputs"] if g.is_activation(t)):
            name = g.tensors[op["outputs"][0]]["name"] if op["outputs"] else ""
            out.append({"index": op["index"], "op": op["name"], "tensor": name,
                        "layer": primary_layer(name)})
    return out


def xnnpack_coverage(path_or_bytes) -> dict:
    """Which ops the XNNPACK CPU delegate takes, measured with the real delegate.

    The LiteRT interpreter applies XNNPACK by default; with delegate node fusion disabled, every
    op XNNPACK claims becomes its own DELEGATE node whose outputs are that op's outputs, so the ops
    left out are exactly those whose outputs no DELEGATE node produces. Those run on TFLite's
    reference kernels (e.g. int16-activation convolutions, uint8<->int8 QUANTIZE at the I/O).

    Returns:
        ``{"method": "xnnpack-delegate", "fully_delegated": bool, "delegated_ops": int,
        "num_ops": int, "fallback_ops": {op name: count}}``, or ``{"method": ..., "error": str}``
        when the interpreter cannot be built.
    """
    from ai_edge_litert.interpreter import Interpreter

    from edge_deeplab.core.contract.metadata import load_tflite_bytes

    data = path_or_bytes if isinstance(path_or_bytes, (bytes, bytearray)) \
        else load_tflite_bytes(Path(path_or_bytes))
    try:
        it = Interpreter(model_content=bytes(data), experimental_disable_delegate_node_fusion=True)
        it.allocate_tensors()
    except Exception as e:  # noqa: BLE001
        msg = first_line(e)
        return {"method": "xnnpack-delegate", "fully_delegated": None, "error": msg,
                "fallback_ops": {}}
    ii = it._interpreter  # noqa: SLF001 - node names/outputs are only exposed here
    produced = set()
    for i in range(ii.NumNodes()):
        if ii.NodeName(i) == "DELEGATE":
            produced.update(int(t) for t in ii.NodeOutputs(i))
    ops = [d for d in it._get_ops_details() if d["op_name"] != "DELEGATE"]  # noqa: SLF001
    fallback = Counter(d["op_name"] for d in ops
                       if not any(int(t) in produced for t in d["outputs"]))
    return {"method": "xnnpack-delegate", "fully_delegated": not fallback,
            "delegated_ops": len(ops) - sum(fallback.values()), "num_ops": len(ops),
            "fallback_ops": dict(fallback), "error": None}


def static_gpu_rules(g: Graph) -> List[str]:
    """Ops (sorted names) the mobile GPU delegate is predicted to refuse.

    An op computing activations of a variant the GPU does not run (the table's ``gpu=False`` rows:
    int16, w8a16) counts as refused, ``"CONV_2D (int16)"``: the LiteRT GPU accelerator refuses most
    of them, and :func:`edge_deeplab.runtime.opener.refuse_gpu_unsupported` keeps such models off
    the GPU (the probe then reports the refusal and these rules answer).
    """
    refused = {d.upper() for d in variants.gpu_refused_activations()}
    bad = set()
    for op in g.ops:
        name = op["name"]
        if name in GPU_UNSUPPORTED_OPS or name.startswith("CUSTOM") or name not in GPU_SUPPORTED_OPS:
            bad.add(name)
        elif name not in _QDQ:
            for t in op["outputs"]:
                if g.is_activation(t) and g.tensors[t]["dtype"] in refused:
                    bad.add(f"{name} ({g.tensors[t]['dtype'].lower()})")
    if g.num_subgraphs > 1:
        bad.add("control flow (multiple subgraphs)")
    return sorted(bad)


def _gpu_coverage(path: str, g: Graph, timeout: float) -> dict:
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
        "num_ops", "quantization", "scheme" (w8a8/w8a16[+float] or the kind), "activations":
        {dtype: ops}, "float_islands": [..], "float_layers": [Keras layers computing in float in a
        quantized model], "metadata": dict|None, "cpu": :func:`xnnpack_coverage`,
        "gpu": {"method", "fully_accelerated", "unsupported_ops", "error"} | None}``; each I/O entry
        has ``name``, ``shape``, ``dtype``, ``scale``, ``zero_point``.

    Raises:
        EdgeDeeplabError: missing, empty, truncated or garbage file.
    """
    from edge_deeplab.core.contract import load_tflite_bytes, read_tflite_metadata

    p = Path(path)
    data = load_tflite_bytes(p)
    g = Graph(data, str(p))
    # The interpreter validates what the schema walk cannot (buffer sizes, op versions).
    try:
        from ai_edge_litert.interpreter import Interpreter

        Interpreter(model_content=data)
    except Exception as e:  # noqa: BLE001
        msg = first_line(e)
        raise EdgeDeeplabError(f"TFLite runtime rejects {p}: {msg}") from None
    meta_error = None
    try:
        meta = read_tflite_metadata(p, sidecar=False)  # (the path names the file in errors)
    except EdgeDeeplabError as e:  # reported, not dropped: eval and demo refuse such a model
        meta, meta_error = None, str(e)
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
        "scheme": quantization_scheme(g),
        "activations": activation_dtypes(g),
        "float_islands": find_float_islands(g),
        "float_layers": sorted({f["layer"] for f in float_compute_ops(g) if f["layer"]}),
        "metadata": meta,
        "metadata_error": meta_error,
        "cpu": dict(xnnpack_coverage(data), xnnpack_reference_ops=xnnpack_reference_ops(g)),
        "standard_metadata": standard,
        "mediapipe": compat,
        "gpu": _gpu_coverage(str(p), g, timeout) if gpu else None,
    }
    return report


def _standard_metadata(data: bytes):
    """``(standard metadata dict | {"error": line} | None, MediaPipe compatibility dict)``."""
    import dataclasses

    from edge_deeplab.core.contract.tflite_metadata import (
        mediapipe_compatibility,
        read_standard_metadata,
    )

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
    scheme = r.get("scheme") or r["quantization"]
    kind = r["quantization"] if scheme == r["quantization"] else f"{r['quantization']}, {scheme}"
    lines = [f"{r['path']}  ({r['size_bytes'] / 1e6:.2f} MB, {r['num_ops']} ops, {kind})"]

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
        acts = r.get("activations") or {}
        if acts:
            lines.append("  activations: " + ", ".join(f"{n} {d}" for d, n in sorted(acts.items())))
        if r.get("float_layers"):
            lines.append(f"  float layers ({len(r['float_layers'])}): {', '.join(r['float_layers'])}")
    cpu = r.get("cpu") or {}
    if cpu.get("fully_delegated") is True:
        lines.append(f"  CPU (XNNPACK): whole graph ({cpu.get('num_ops')} ops delegated)")
    elif cpu.get("fully_delegated") is False:
        fb = ", ".join(f"{n}x{c}" for n, c in sorted((cpu.get("fallback_ops") or {}).items()))
        lines.append(f"  CPU (XNNPACK): {cpu.get('num_ops', 0) - cpu.get('delegated_ops', 0)} of "
                     f"{cpu.get('num_ops')} ops on TFLite's reference kernels, outside XNNPACK: {fb}")
    elif cpu.get("error"):
        lines.append(f"  CPU (XNNPACK): not measured ({cpu['error']})")
    ref = cpu.get("xnnpack_reference_ops")
    if ref:
        lines.append("    uint8 I/O: " + ", ".join(f"#{o['index']} {o['op']} {o['reason']}" for o in ref)
                     + "; about 8% of CPU latency on the default 512x512 model (2-core AVX2). Export "
                     "with --io-type int8 to keep the whole graph in XNNPACK (MediaPipe and the Task "
                     "Library need uint8 or float input)")
    meta = r.get("metadata") or {}
    if r.get("metadata_error"):
        lines.append(f"  metadata: UNUSABLE: {r['metadata_error']} (eval, bench and demo refuse "
                     f"this model)")
    if meta:
        ex = meta.get("export", {})
        variant = ex.get("variant")
        kf = (ex.get("keep_float") or {}).get("patterns")
        if kf:
            variant = f"{variant} (keep-float {', '.join(kf)})"
        lines.append(f"  metadata: {len(meta.get('labels', []))} labels, output={meta.get('output')}, "
                     f"variant={variant}, normalize_in_graph={meta.get('normalize_in_graph')}")
        rp = ex.get("raw_pixels")
        if rp:
            lines.append(f"    {rp['note']}")
    lines.extend(_format_standard(r))
    g = r.get("gpu")
    if g is not None:
        refused = [d for d in variants.gpu_refused_activations()
                   if f"{d} activations" in str(g.get("error") or "")]
        how = ("LiteRT GPU accelerator" if g["method"] == "litert-gpu" else
               f"static rules: the GPU accelerator refuses {refused[0]} activations" if refused else
               "static rules (no GPU here)")
        if g["fully_accelerated"]:
            lines.append(f"  GPU: fully accelerated ({how})")
        else:
            lines.append(f"  GPU: NOT fully accelerated ({how}); falls back: "
                         f"{', '.join(g['unsupported_ops']) or 'unknown ops'}")
        if g.get("error"):
            lines.append(f"    note: {g['error']}")
    return "\n".join(lines)
