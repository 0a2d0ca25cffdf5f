"""Architecture summary: parameters, multiply-adds, feature/branch shapes, receptive field.

:func:`summarize` builds the model for a :class:`~edge_deeplab.model.config.ModelConfig` (or takes a
built one) and walks its flat functional graph:

* **parameters**: total / trainable (BatchNorm moving statistics are non-trainable) and the count
  after BatchNorm folding (what the float TFLite model stores).
* **multiply-adds** from layer shapes: ``Conv2D`` ``Ho*Wo*kh*kw*Cin*Cout``, ``DepthwiseConv2D``
  ``Ho*Wo*kh*kw*Cin*depth_multiplier``, ``Dense`` ``in*out``. BatchNorm is counted as folded (0),
  bias adds, ReLU, Add, pooling and Concatenate are not counted. Bilinear upsampling is **not**
  included in ``multiply_adds``; it is reported separately as ``upsample_multiply_adds`` (4
  multiply-adds per output element: one per interpolation tap).
* **output stride**: input size / backbone feature size, checked against the config.
* **feature shapes** of every backbone stage (with the stride and dilation each unit runs at), the
  low-level decoder input, every ASPP branch, the ASPP projection, decoder and logits.
* **theoretical receptive field** (pixels of the input that can influence one output pixel), walked
  through the graph: a layer with kernel ``k``, stride ``s``, dilation ``d`` grows it by
  ``(d*(k-1)) * jump`` where ``jump`` is the product of earlier strides; bilinear upsampling adds one
  input-grid step (2-tap interpolation) and divides the jump. The image-pooling branch sees the
  whole input (``global``); receptive fields are reported without it (``local``) and flagged.

Example:
    >>> from edge_deeplab.model.config import ModelConfig
    >>> s = summarize(ModelConfig(input_size=64, num_classes=3, alpha=0.35))
    >>> s["output_stride"], s["output_shape"]
    (16, [64, 64, 3])
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import parse_size
from edge_deeplab.model.config import ModelConfig

#: Last unit of each MobileNet-v2 stage (Keras block ids), with its nominal channels.
STAGE_LAST_UNITS = ((0, 16), (2, 24), (5, 32), (9, 64), (12, 96), (15, 160), (16, 320))


def _shape(t) -> List[int]:
    return [int(d) for d in t.shape[1:]]


def _layer_geometry(layer):
    """(kernel, stride, dilation, upsample factor) of a layer as pairs; None where n/a."""
    cls = type(layer).__name__
    if cls in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
        return parse_size(layer.kernel_size), parse_size(layer.strides), parse_size(layer.dilation_rate), None
    if cls in ("AveragePooling2D", "MaxPooling2D"):
        return parse_size(layer.pool_size), parse_size(layer.strides), (1, 1), None
    if cls == "UpSampling2D":
        return None, None, None, parse_size(layer.size)
    if cls == "ZeroPadding2D":
        return (1, 1), (1, 1), (1, 1), None
    return None, None, None, None


def _macs(layer, inp, out) -> Tuple[int, int]:
    """(multiply-adds, upsample multiply-adds) of one layer."""
    cls = type(layer).__name__
    if cls == "Conv2D":
        kh, kw = parse_size(layer.kernel_size)
        ho, wo, co = _shape(out)
        ci = _shape(inp)[-1]
        groups = getattr(layer, "groups", 1) or 1
        return ho * wo * kh * kw * ci * co // groups, 0
    if cls == "DepthwiseConv2D":
        kh, kw = parse_size(layer.kernel_size)
        ho, wo, co = _shape(out)
        return ho * wo * kh * kw * co, 0
    if cls == "SeparableConv2D":
        kh, kw = parse_size(layer.kernel_size)
        ho, wo, co = _shape(out)
        ci = _shape(inp)[-1]
        dm = layer.depth_multiplier
        return ho * wo * (kh * kw * ci * dm + ci * dm * co), 0
    if cls == "Dense":
        return int(_shape(inp)[-1]) * int(layer.units) * max(1, _num_positions(out)), 0
    if cls == "UpSampling2D" and getattr(layer, "interpolation", "nearest") == "bilinear":
        n = 1
        for d in _shape(out):
            n *= d
        return 0, 4 * n
    return 0, 0


def _num_positions(t) -> int:
    n = 1
    for d in _shape(t)[:-1]:
        n *= d
    return n


def _folded_params(model) -> int:
    """Parameters after folding every BatchNorm into the preceding conv (bias added if absent)."""
    total = 0
    for layer in model.layers:
        cls = type(layer).__name__
        if cls == "BatchNormalization":
            continue
        n = sum(int(w.shape.num_elements()) for w in layer.weights)
        total += n
        if cls in ("Conv2D", "DepthwiseConv2D") and not layer.use_bias:
            # BN folding gives the conv a bias (one per output channel)
            total += int(layer.output_shape[-1])
    return total


def receptive_fields(model) -> Dict[str, dict]:
    """Theoretical receptive field of every layer output.

    Returns:
        ``{layer_name: {"rf": [h, w] | None, "jump": [h, w], "global": bool}}``; ``rf`` excludes
        global-pooling paths (``global`` says whether one reaches the layer; ``rf`` is ``None``
        when only such paths do).
    """
    from edge_deeplab.core._tf import keras

    state = {}  # id(tensor) -> (rf (h,w), jump (h,w) floats, global)
    for t in model.inputs:
        state[id(t)] = ((1, 1), (1.0, 1.0), False)
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if len(layer._inbound_nodes) != 1:
            raise EdgeDeeplabError(f"layer {layer.name} is shared; cannot walk the graph")
        ins = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        prev = [state[id(t)] for t in ins if id(t) in state]
        if not prev:
            raise EdgeDeeplabError(f"cannot walk the graph at layer {layer.name}")
        # rf None: every path to this tensor goes through a global pooling (no local extent).
        local = [p for p in prev if p[0] is not None]
        rf = tuple(max(p[0][i] for p in local) for i in range(2)) if local else None
        jump = tuple(max(p[1][i] for p in (local or prev)) for i in range(2))
        glob = any(p[2] for p in prev)
        kernel, stride, dil, up = _layer_geometry(layer)
        cls = type(layer).__name__
        is_global_pool = cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D") or (
            cls in ("AveragePooling2D", "MaxPooling2D")
            and _shape(layer.output)[:2] == [1, 1] and _shape(ins[0])[:2] != [1, 1])
        if is_global_pool:
            glob, rf = True, None
        elif kernel is not None:
            if rf is not None:
                rf = tuple(rf[i] + dil[i] * (kernel[i] - 1) * jump[i] for i in range(2))
            jump = tuple(jump[i] * stride[i] for i in range(2))
        elif up is not None and tuple(up) != (1, 1):
            if getattr(layer, "interpolation", "nearest") == "bilinear" and rf is not None:
                rf = tuple(rf[i] + jump[i] for i in range(2))
            jump = tuple(jump[i] / up[i] for i in range(2))
        if isinstance(layer.output, (list, tuple)):
            outs = layer.output
        else:
            outs = [layer.output]
        for t in outs:
            state[id(t)] = (rf, jump, glob)
        out[layer.name] = {"rf": [int(round(rf[0])), int(round(rf[1]))] if rf is not None else None,
                           "jump": [float(jump[0]), float(jump[1])], "global": bool(glob)}
    return out


def summarize(config: ModelConfig, model=None) -> dict:
    """Summary dict of a DeepLab model (built from ``config`` unless ``model`` is given).

    Args:
        config: the architecture.
        model: an already built model of that config (skips building).

    Returns:
        A JSON-serialisable dict with ``config``, ``params`` (``total``, ``trainable``,
        ``non_trainable``, ``folded``), ``multiply_adds``, ``upsample_multiply_adds``,
        ``multiply_adds_note``, ``output_stride``, ``input_shape``, ``output_shape``, ``stages``,
        ``low_level``, ``aspp`` (branches, rates), ``decoder``, ``receptive_field``, ``layers``.
    """
    from edge_deeplab.model.deeplab import (
        BACKBONE_OUTPUT_LAYER,
        LOW_LEVEL_LAYER,
        build_model,
        unit_plan,
    )

    if model is None:
        model = build_model(config)
    by_name = {l.name: l for l in model.layers}
    h, w = config.input_size

    macs = up_macs = 0
    per_layer = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        m, u = _macs(layer, layer.input if not isinstance(layer.input, list) else layer.input[0],
                     layer.output)
        macs += m
        up_macs += u
        if m or u:
            per_layer.append({"name": layer.name, "type": type(layer).__name__,
                              "output": _shape(layer.output), "multiply_adds": m + u})

    rfs = receptive_fields(model)
    total = int(model.count_params())
    trainable = int(sum(int(w.shape.num_elements()) for w in model.trainable_weights))

    def shape_of(name):
        return _shape(by_name[name].output) if name in by_name else None

    plan = unit_plan(config.output_stride, config.multi_grid)
    stages = [{"name": "Conv1", "layer": "Conv1_relu", "shape": shape_of("Conv1_relu"),
               "stride": 2, "rate": 1}]
    for i, (unit, ch) in enumerate(STAGE_LAST_UNITS, start=1):
        prefix = f"block_{unit}_" if unit else "expanded_conv_"
        lname = prefix + "add" if prefix + "add" in by_name else prefix + "project_BN"
        first = STAGE_LAST_UNITS[i - 2][0] + 1 if i > 1 else 0
        units = plan[first:unit + 1]
        stride = h // shape_of(lname)[0] if shape_of(lname) else None
        stages.append({"name": f"stage{i}", "units": [u["block_id"] for u in units],
                       "layer": lname, "shape": shape_of(lname), "stride": stride,
                       "rates": [u["rate"] for u in units],
                       "unit_strides": [u["stride"] for u in units],
                       "receptive_field": rfs.get(lname, {}).get("rf")})

    backbone = shape_of(BACKBONE_OUTPUT_LAYER)
    measured_os = h // backbone[0]
    if measured_os != config.output_stride or w // backbone[1] != config.output_stride:
        raise EdgeDeeplabError(f"model output stride {measured_os} does not match the config's "
                               f"{config.output_stride}")

    rates = config.resolved_aspp_rates()
    branches = [{"name": "aspp0", "kind": "1x1 conv", "rate": 1, "layer": "aspp0_relu",
                 "shape": shape_of("aspp0_relu"), "receptive_field": rfs["aspp0_relu"]["rf"]}]
    for i, r in enumerate(rates, start=1):
        ln = f"aspp{i}_pointwise_relu"
        branches.append({"name": f"aspp{i}", "kind": "atrous separable 3x3", "rate": int(r),
                         "layer": ln, "shape": shape_of(ln), "receptive_field": rfs[ln]["rf"]})
    pool_layer = "image_pooling_upsample" if "image_pooling_upsample" in by_name \
        else "image_pooling_conv_relu"
    branches.append({"name": "image_pooling", "kind": "global average pool + 1x1 conv",
                     "rate": None, "layer": pool_layer, "shape": shape_of(pool_layer),
                     "pooled_shape": shape_of("image_pooling_conv_relu"),
                     "receptive_field": "global"})

    decoder = None
    if config.decoder:
        decoder = {
            "low_level_projection": shape_of("decoder_low_level_relu"),
            "upsampled_aspp": shape_of("decoder_upsample") or shape_of("aspp_projection_relu"),
            "concat": shape_of("decoder_concat"),
            "conv0": shape_of("decoder_conv0_pointwise_relu"),
            "conv1": shape_of("decoder_conv1_pointwise_relu"),
        }
    out_layer = model.layers[-1].name
    return {
        "name": model.name,
        "config": config.to_dict(),
        "input_shape": _shape(model.inputs[0]),
        "output_shape": _shape(model.outputs[0]),
        "output_stride": measured_os,
        "params": {"total": total, "trainable": trainable, "non_trainable": total - trainable,
                   "folded": _folded_params(model)},
        "multiply_adds": int(macs),
        "upsample_multiply_adds": int(up_macs),
        "multiply_adds_note": "conv/depthwise/dense only, BatchNorm folded; bilinear upsampling "
                              "counted separately (4 per output element), not in multiply_adds",
        "stages": stages,
        "backbone_output": {"layer": BACKBONE_OUTPUT_LAYER, "shape": backbone,
                            "receptive_field": rfs[BACKBONE_OUTPUT_LAYER]["rf"]},
        "low_level": {"layer": LOW_LEVEL_LAYER, "shape": shape_of(LOW_LEVEL_LAYER)}
        if config.decoder else None,
        "aspp": {"rates": [int(r) for r in rates], "branches": branches,
                 "concat": shape_of("aspp_concat"), "projection": shape_of("aspp_projection_relu")},
        "decoder": decoder,
        "receptive_field": {
            "backbone": rfs[BACKBONE_OUTPUT_LAYER]["rf"],
            "output": rfs[out_layer]["rf"],
            "output_global": rfs[out_layer]["global"],
            "note": "theoretical, in input pixels, excluding the image-pooling branch (which sees "
                    "the whole input); values larger than the input mean the border is reached "
                    "through padding",
        },
        "layers": per_layer,
    }


def format_summary(s: dict) -> str:
    """Human-readable text of :func:`summarize`'s dict."""
    c = s["config"]
    p = s["params"]
    lines = [
        f"{s['name']}: input {s['input_shape']} -> output {s['output_shape']}",
        f"  alpha {c['alpha']}, output stride {s['output_stride']}, {c['num_classes']} classes, "
        f"decoder {'on' if c['decoder'] else 'off'}",
        f"  parameters: {p['total']:,} ({p['trainable']:,} trainable; {p['folded']:,} after "
        f"BatchNorm folding)",
        f"  multiply-adds: {s['multiply_adds'] / 1e9:.3f} G (conv/depthwise/dense, BN folded; "
        f"+ {s['upsample_multiply_adds'] / 1e6:.1f} M for bilinear upsampling, not included)",
        "  backbone stages:",
    ]
    for st in s["stages"]:
        extra = ""
        if "rates" in st:
            extra = f"  units {st['units'][0]}-{st['units'][-1]} rates {st['rates']}"
            if st.get("receptive_field"):
                extra += f"  RF {st['receptive_field'][0]}x{st['receptive_field'][1]}"
        lines.append(f"    {st['name']:<8} {str(st['shape']):<18} stride {st['stride']:<3}{extra}")
    if s.get("low_level"):
        lines.append(f"  low-level features ({s['low_level']['layer']}): {s['low_level']['shape']}")
    lines.append(f"  ASPP (rates {s['aspp']['rates']}):")
    for b in s["aspp"]["branches"]:
        rf = b["receptive_field"]
        rf = rf if isinstance(rf, str) else f"{rf[0]}x{rf[1]}"
        rate = f"rate {b['rate']}" if b["rate"] else "global"
        lines.append(f"    {b['name']:<14} {b['kind']:<32} {rate:<8} {str(b['shape']):<18} RF {rf}")
    lines.append(f"    concat {s['aspp']['concat']} -> projection {s['aspp']['projection']}")
    if s.get("decoder"):
        d = s["decoder"]
        lines.append(f"  decoder: upsampled ASPP {d['upsampled_aspp']} + low-level "
                     f"{d['low_level_projection']} -> {d['concat']} -> {d['conv1']}")
    rf = s["receptive_field"]
    lines.append(f"  receptive field: backbone {rf['backbone'][0]}x{rf['backbone'][1]} px, output "
                 f"{rf['output'][0]}x{rf['output'][1]} px (theoretical; plus the global image-"
                 f"pooling branch)")
    return "\n".join(lines)
