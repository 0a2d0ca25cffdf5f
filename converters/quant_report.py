"""Per-layer quantization error: which layer made the int8 model worse?

:func:`quant_report` runs a quantized ``.tflite`` and its float reference on the same images, keeps
every intermediate tensor (litert-quantizer's interpreter factory,
``tfl_interpreter_utils.create_tfl_interpreter(preserve_all_tensors=True)``, and its
``get_tensor_data``, which dequantizes int8/int16 tensors with their scale and zero point), matches
the quantized graph's op outputs to the reference's by tensor name, and reports for each op output,
in graph order:

* ``snr_db``: ``10 log10(sum(ref^2) / sum((q - ref)^2))`` pooled over all images;
* ``rel_mse``: ``sum((q - ref)^2) / sum(ref^2)`` (the same ratio, linear);
* ``cosine``: cosine similarity of the flattened tensors (pooled);
* ``snr_drop_db``: how much SNR this op loses relative to the worst of its (matched) inputs. The
  SNR of a tensor includes all the error accumulated upstream, so a damaged layer drags every
  later layer down with it; the drop is what the op itself adds, and the "worst layers" are ranked
  by it (ties and ops without matched inputs: by ``snr_db``).

litert-quantizer's own ``Quantizer.validate`` / ``model_validator.compare_model`` does most of this,
but it feeds the *same* raw input to both models (wrong for a model with int8/uint8 input), averages
per-image linear metrics, and reports an unordered dict; so this module drives the interpreters
itself and uses the library for interpreter creation and dequantization.

The Keras layer behind each tensor is parsed from its name
(:func:`converters.layer_names.keras_layers`).

Example:
    >>> r = quant_report("m_int8.tflite", "m_f32.tflite", images)   # doctest: +SKIP
    >>> r["worst"][0]["layer"], r["layers"][0].keys()               # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Iterable, List, Optional

import numpy as np

from edge_deeplab.core.errors import EdgeDeeplabError, first_line

DEFAULT_IMAGES = 8
DEFAULT_TOP = 5
_SKIP_OPS = ("QUANTIZE", "DEQUANTIZE")


def _load(path, what: str) -> bytes:
    from edge_deeplab.core.contract.metadata import check_tflite_bytes

    p = Path(path)
    if not p.is_file():
        raise EdgeDeeplabError(f"{what} not found: {p}")
    data = p.read_bytes()
    check_tflite_bytes(data, str(p))
    return data


def _io(data: bytes, name: str):
    from ai_edge_litert.interpreter import Interpreter

    try:
        it = Interpreter(model_content=data)
    except Exception as e:  # noqa: BLE001
        raise EdgeDeeplabError(f"TFLite runtime rejects {name}: {first_line(e)}") from None
    return it.get_input_details(), it.get_output_details()


def check_pair(quant: bytes, reference: bytes, quant_name: str = "quantized model",
               reference_name: str = "reference") -> dict:
    """One-line errors for a pair that cannot be compared; cheap (no inference).

    The reference must be float (float32 or float16 weights); the quantized model must have some
    quantization (full-integer, mixed, or dynamic-range); inputs and outputs must agree in number
    and shape.

    Returns:
        ``{"quantization": kind of the quantized model, "reference_quantization": kind}``.
    """
    from converters.analyze import model_quantization

    qk = model_quantization(quant)
    rk = model_quantization(reference)
    if rk not in ("float32", "float16"):
        raise EdgeDeeplabError(f"{reference_name} is not a float model ({rk}); pass the float32 "
                               f"export as --reference")
    if qk in ("float32", "float16"):
        raise EdgeDeeplabError(f"{quant_name} is not quantized ({qk}): there is no quantization "
                               f"error to report")
    qi, qo = _io(quant, quant_name)
    ri, ro = _io(reference, reference_name)
    for kind, a, b in (("inputs", qi, ri), ("outputs", qo, ro)):
        sa = [list(map(int, d["shape"])) for d in a]
        sb = [list(map(int, d["shape"])) for d in b]
        if sa != sb:
            raise EdgeDeeplabError(f"{reference_name} does not match {quant_name}: {kind} "
                                   f"{sb} vs {sa}")
    return {"quantization": qk, "reference_quantization": rk}


def _model_input(path, detail: dict):
    """The runtime's one image-to-input path for this model: :meth:`ModelInput.for_model
    <edge_deeplab.runtime.model_input.ModelInput.for_model>` of its input tensor and of the metadata
    the runtime reads (:func:`~edge_deeplab.core.contract.read_model_metadata`: standard metadata over
    our JSON, embedded else the sidecar), so normalization, geometry and padding are eval's and the demo's."""
    from edge_deeplab.core.contract import read_model_metadata
    from edge_deeplab.runtime.model_input import ModelInput
    from edge_deeplab.runtime.tensors import details_to_info

    # corrupt metadata is the runtime's one-line error here too, not a silent default
    return ModelInput.for_model(details_to_info(detail), read_model_metadata(path) or {})


def _interpreter(data: bytes, threads: Optional[int]):
    import warnings

    from litert_quantizer.utils import tfl_interpreter_utils as tiu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tiu.create_tfl_interpreter(data, use_xnnpack=True,
                                          num_threads=int(threads or os.cpu_count() or 1),
                                          preserve_all_tensors=True)


def match_key(tensor_name: str) -> str:
    """The name a tensor is matched by across the two graphs: tfmot's QAT wrappers add ``quant_``
    to every Keras layer name (``m/quant_block_1_expand/Conv2D``), which the float reference
    does not have (``m/block_1_expand/Conv2D``).

    Example:
        >>> match_key("m/quant_b1_relu/Relu6;m/quant_b1/Conv2D")
        'm/b1_relu/Relu6;m/b1/Conv2D'
    """
    return re.sub(r"(^|;)([^/;]+)/quant_", r"\1\2/", str(tensor_name))


def _graph_order(it) -> List[dict]:
    details = {d["index"]: d for d in it.get_tensor_details()}
    ops = []
    # QUANTIZE/DEQUANTIZE only change the representation: trace through them to the real producer.
    for d in it._get_ops_details():  # noqa: SLF001 - the only op list the runtime exposes
        if d["op_name"] == "DELEGATE":
            continue
        ops.append({"index": int(d["index"]), "op": d["op_name"],
                    "inputs": [int(t) for t in d["inputs"] if int(t) >= 0],
                    "outputs": [details[int(t)] for t in d["outputs"] if int(t) >= 0]})
    return ops


def quant_report(quant_path, reference_path, images: Iterable[np.ndarray], *,
                 max_images: int = DEFAULT_IMAGES, top: int = DEFAULT_TOP,
                 threads: Optional[int] = None) -> dict:
    """Per-op-output error of a quantized ``.tflite`` against its float reference.

    Args:
        quant_path: the quantized model (int8, w8a16, selective precision, dynamic-range ...).
        reference_path: the float32 model it was made from (same graph, same tensor names).
        images: uint8 RGB images ``(H, W, 3)``, any size; each model gets them through the runtime's
            image-to-input path (:class:`~edge_deeplab.runtime.model_input.ModelInput`): its geometry,
            normalization and input quantization.
        max_images: use at most this many images.
        top: how many worst layers go in ``report["worst"]``.
        threads: interpreter threads (default: all CPUs).

    Returns:
        ``{"quant", "reference", "quantization", "images", "matched", "unmatched", "layers":
        [...], "worst": [...], "output": {...}}``. Each ``layers`` entry (graph order of the
        quantized model): ``depth`` (0-based position in this list), ``op_index``, ``op``,
        ``tensor``, ``layer`` (Keras layer or None), ``layers`` (all Keras layers in the name),
        ``dtype`` (the quantized model's tensor type), ``snr_db``, ``rel_mse``, ``cosine``,
        ``snr_drop_db``. ``snr_db`` is None where the tensors are identical.

    Raises:
        EdgeDeeplabError: missing/garbage files, a pair that cannot be compared
            (:func:`check_pair`), no images, no tensor names in common.
    """

    from converters.layer_names import keras_layers

    qdata = _load(quant_path, "quantized model")
    rdata = _load(reference_path, "reference model")
    kinds = check_pair(qdata, rdata, Path(quant_path).name, Path(reference_path).name)

    qit, rit = _interpreter(qdata, threads), _interpreter(rdata, threads)
    qin, rin = qit.get_input_details()[0], rit.get_input_details()[0]
    qmi, rmi = _model_input(quant_path, qin), _model_input(reference_path, rin)
    qops = _graph_order(qit)
    rnames = {match_key(d["name"]): d for d in rit.get_tensor_details()}

    # Candidate (op, tensor) pairs: same name and shape in both graphs, values that mean something.
    pairs = []
    # QUANTIZE/DEQUANTIZE outputs are measured against the reference tensor they convert (the
    # graph input, or a matched tensor) so that the input's own quantization counts as an input
    # error of the first layer, not as error the layer adds; they are not listed as layers.
    qnames = {d["index"]: match_key(d["name"]) for d in qit.get_tensor_details()}
    hidden = []
    for op in qops:
        if op["op"] in _SKIP_OPS:
            src = op["inputs"][0] if op["inputs"] else None
            rd = rin if src == int(qin["index"]) else rnames.get(qnames.get(src, ""))
            for qd in op["outputs"]:
                if rd is not None and list(rd["shape"]) == list(qd["shape"]) \
                        and np.dtype(rd["dtype"]).kind == "f":
                    hidden.append((op, qd, rd))
            continue
        for qd in op["outputs"]:
            rd = rnames.get(match_key(qd["name"]))
            if rd is None or list(rd["shape"]) != list(qd["shape"]) or not np.all(qd["shape"]):
                continue
            if np.dtype(rd["dtype"]).kind not in "f":  # e.g. an int32 class map
                continue
            pairs.append((op, qd, rd))
    # The model's own input and output, matched by position (their names and types may differ:
    # e.g. a uint8 input followed by a QUANTIZE to int8).
    qout, rout = qit.get_output_details()[0], rit.get_output_details()[0]
    ends = [("input", qin, rin), ("output", qout, rout)] + [("qdq", qd, rd) for _, qd, rd in hidden]
    if not pairs:
        raise EdgeDeeplabError(f"{Path(reference_path).name} shares no tensor names with "
                               f"{Path(quant_path).name}: is it the float model the quantized "
                               f"one was made from?")

    from litert_quantizer.utils.tfl_interpreter_utils import get_tensor_data

    acc = np.zeros((len(pairs) + len(ends), 4), np.float64)  # sum r^2, err^2, q*r, q^2
    n_img = 0
    for img in images:
        if n_img >= max_images:
            break
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3:
            raise EdgeDeeplabError(f"expected RGB images (H, W, 3), got shape {img.shape}")
        for it, det, mi in ((qit, qin, qmi), (rit, rin, rmi)):
            it.set_tensor(det["index"], mi(img)[0])
            try:
                it.invoke()
            except Exception as e:  # noqa: BLE001
                raise EdgeDeeplabError(f"inference failed: {first_line(e)}") from None
        for k, (_, qd, rd) in enumerate(pairs + ends):
            if np.dtype(rd["dtype"]).kind != "f":
                continue
            q = np.asarray(get_tensor_data(qit, qd), np.float64).ravel()
            r = np.asarray(get_tensor_data(rit, rd), np.float64).ravel()
            d = q - r
            acc[k] += (r @ r, d @ d, q @ r, q @ q)
        n_img += 1
    if n_img == 0:
        raise EdgeDeeplabError("no images to run the report on")

    def metrics(k):
        sig, err, dot, qq = acc[k]
        snr = None if err == 0 else (10 * math.log10(sig / err) if sig > 0 else -999.0)
        return {"snr_db": None if snr is None else round(float(snr), 3),
                "rel_mse": float(err / sig) if sig > 0 else None,
                "cosine": float(dot / math.sqrt(sig * qq)) if sig > 0 and qq > 0 else None}

    end_metrics = {name: {"tensor": qd["name"], "dtype": np.dtype(qd["dtype"]).name,
                          **metrics(len(pairs) + i)}
                   for i, (name, qd, _) in enumerate(ends[:2])}
    # Producer tracing through QUANTIZE/DEQUANTIZE; the graph input stands for itself.
    alias = {}
    for op in qops:
        if op["op"] in _SKIP_OPS and op["inputs"]:
            for qd in op["outputs"]:
                alias[int(qd["index"])] = op["inputs"][0]
    by_tensor = {int(qin["index"]): {"snr_db": end_metrics["input"]["snr_db"]}}
    for i, (_, qd, _) in enumerate(hidden):
        by_tensor[int(qd["index"])] = metrics(len(pairs) + 2 + i)

    def source(t):
        seen = 0
        while t not in by_tensor and t in alias and seen < 64:
            t, seen = alias[t], seen + 1
        return by_tensor.get(t)

    layers = []
    for k, (op, qd, _) in enumerate(pairs):
        entry = {
            "depth": len(layers), "op_index": op["index"], "op": op["op"], "tensor": qd["name"],
            "layer": (keras_layers(match_key(qd["name"])) or [None])[0],
            "layers": keras_layers(match_key(qd["name"])),
            "dtype": np.dtype(qd["dtype"]).name, **metrics(k), "snr_drop_db": None,
        }
        # SNR lost at this op: worst matched input's SNR minus its own (None = exact = 200 dB).
        ins = [source(t) for t in op["inputs"]]
        ins = [200.0 if x["snr_db"] is None else min(x["snr_db"], 200.0) for x in ins if x]
        if ins:
            own = 200.0 if entry["snr_db"] is None else min(entry["snr_db"], 200.0)
            entry["snr_drop_db"] = round(float(min(ins) - own), 3)
        by_tensor[int(qd["index"])] = entry
        layers.append(entry)
    inf = 1e9

    def badness(e):
        drop = e["snr_drop_db"] if e["snr_drop_db"] is not None else -inf
        return (-drop, inf if e["snr_db"] is None else e["snr_db"])

    ranked = sorted(layers, key=badness)
    matched = {e["tensor"] for e in layers}
    unmatched = sorted({qd["name"] for op in qops if op["op"] not in _SKIP_OPS
                        for qd in op["outputs"]} - matched)
    return {
        "quant": str(quant_path), "reference": str(reference_path),
        "quantization": kinds["quantization"],
        "reference_quantization": kinds.get("reference_quantization"),
        "images": n_img, "matched": len(layers), "unmatched": unmatched,
        "input": end_metrics["input"], "output": end_metrics["output"],
        "layers": layers, "worst": ranked[:max(0, int(top))],
    }


def report_images(size, dataset: Optional[str] = None, data_dir=None, split: str = "train",
                  n: int = DEFAULT_IMAGES):
    """uint8 RGB images for a report: ``n`` from a dataset split, else generated scenes."""
    from converters.calibration import dataset_images, structured_images

    if dataset:
        return dataset_images(dataset, data_dir=data_dir, split=split, steps=n)
    return structured_images(n, size, seed=1)


def model_input_size(path) -> tuple:
    """``(height, width)`` of a ``.tflite``'s (first) input."""
    ins, _ = _io(_load(path, "model"), Path(path).name)
    return tuple(int(s) for s in ins[0]["shape"][1:3])


def format_worst(report: dict, top: Optional[int] = None) -> str:
    """Console table of the worst layers (ranked by SNR drop) and the output's SNR."""
    rows = report["worst"] if top is None else report["worst"][:top]

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    missing = len(report.get("unmatched") or [])
    total = report["matched"] + missing
    lines = [f"{report['quant']} vs {report['reference']}: {report['matched']} of {total} op "
             f"outputs compared on {report['images']} images ({report['quantization']})"]
    if missing:
        hint = ("; a float16 reference names and splits its tensors differently: pass the "
                "float32 export as --reference to compare every layer"
                if report.get("reference_quantization") == "float16" else "")
        lines.append(f"  note: {missing} op outputs have no counterpart in the reference and are "
                     f"not compared{hint}")
    out = report.get("output")
    if out:
        lines.append(f"  model output: SNR {f(out['snr_db'], '.1f')} dB, "
                     f"rel MSE {f(out['rel_mse'], '.3g')}, cosine {f(out['cosine'], '.4f')}")
    lines.append(f"  worst {len(rows)} layers (by SNR lost at the layer):")
    lines.append(f"    {'depth':>5}  {'op':<18} {'layer':<28} {'dtype':<7} {'SNR dB':>7} "
                 f"{'drop dB':>8} {'rel MSE':>9} {'cosine':>7}")
    for e in rows:
        lines.append(f"    {e['depth']:>5}  {e['op']:<18} {str(e['layer'] or '?')[:28]:<28} "
                     f"{e['dtype']:<7} {f(e['snr_db'], '7.1f'):>7} {f(e['snr_drop_db'], '8.1f'):>8} "
                     f"{f(e['rel_mse'], '9.3g'):>9} {f(e['cosine'], '7.4f'):>7}")
    return "\n".join(lines)


def plot_report(report: dict, out_png, top: int = DEFAULT_TOP) -> Path:
    """SNR (dB) against depth, one point per op output, the ``top`` worst layers named.

    Written atomically with matplotlib's Agg backend.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from edge_deeplab.core.atomic_io import atomic_path

    layers = report["layers"]
    cap = max([e["snr_db"] for e in layers if e["snr_db"] is not None] + [0.0]) + 10
    xs = [e["depth"] for e in layers]
    ys = [cap if e["snr_db"] is None else e["snr_db"] for e in layers]
    fig, ax = plt.subplots(figsize=(max(8, len(layers) / 8), 4.5), dpi=110)
    ax.plot(xs, ys, "-", color="#999999", lw=1, zorder=1)
    colors = ["#d62728" if e["dtype"] in ("float32", "float16") else
              "#1f77b4" if e["dtype"] == "int16" else "#2ca02c" for e in layers]
    ax.scatter(xs, ys, c=colors, s=14, zorder=2)
    for e in report["worst"][:top]:
        y = cap if e["snr_db"] is None else e["snr_db"]
        ax.annotate(f"{e['layer'] or e['op']} ({e['snr_drop_db']:+.1f} dB)"
                    if e["snr_drop_db"] is not None else str(e["layer"] or e["op"]),
                    (e["depth"], y), xytext=(4, 6), textcoords="offset points", fontsize=7,
                    color="#d62728", arrowprops=dict(arrowstyle="-", color="#d62728", lw=0.5))
    ax.set_xlabel("depth (op outputs in graph order)")
    ax.set_ylabel("SNR vs float reference (dB)")
    ax.set_title(f"{Path(report['quant']).name}: per-layer quantization error "
                 f"({report['images']} images)", fontsize=9)
    ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], marker="o", ls="", color=c, label=l) for c, l in
                       (("#2ca02c", "int8"), ("#1f77b4", "int16"), ("#d62728", "float"))],
              fontsize=7, loc="lower left")
    fig.tight_layout()
    out = Path(out_png)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
