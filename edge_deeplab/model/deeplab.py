"""DeepLab v3+ with a MobileNet-v2 backbone, as one flat tf_keras functional graph.

Every layer is a stock Keras layer (Conv2D, DepthwiseConv2D, BatchNormalization, ReLU, Add,
Concatenate, GlobalAveragePooling2D, UpSampling2D), so the model:

* quantizes with tensorflow-model-optimization over the whole graph (no nested models, no Lambda);
* converts to TFLite ops every mobile GPU delegate supports (CONV_2D, DEPTHWISE_CONV_2D, ADD,
  CONCATENATION, MEAN, RESIZE_BILINEAR), with BatchNorm folded, provided conversion runs
  under :func:`edge_deeplab.model.layers.native_dilated_depthwise` (``converters.export`` does);
* loads ImageNet MobileNetV2 weights by layer name (the backbone's names match
  ``keras.applications.MobileNetV2``).

Geometry: ``config.output_stride`` decides where striding stops. The unit that would stride past it
runs at stride 1 with the current dilation, and every later unit's dilation doubles, exactly as in
the DeepLab reference implementation. Strided convs use ``padding='same'``, which for even inputs
pads bottom/right by one pixel exactly like Keras' ``ZeroPadding2D(correct_pad)`` + ``'valid'``, so
ImageNet features are unchanged while the graph avoids a PAD op per stride.

Example:
    >>> from edge_deeplab.model.config import ModelConfig
    >>> from edge_deeplab.model.deeplab import build_model
    >>> m = build_model(ModelConfig(input_size=(64, 64), num_classes=3, alpha=0.35))
    >>> tuple(m.output_shape)
    (None, 64, 64, 3)
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from edge_deeplab.core._tf import keras
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.model.config import ModelConfig

layers = keras.layers

BN_MOMENTUM = 0.999  # keras.applications.MobileNetV2's value
BN_EPS = 1e-3

#: (expansion t, output channels c, repeats n, first stride s) of MobileNet-v2's 17 inverted
#: residual units, grouped into stages; units are numbered 0..16 (Keras' block ids).
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

#: Name of the stride-4 layer the v3+ decoder reads (144*alpha channels, the expansion of unit 3).
LOW_LEVEL_LAYER = "block_3_expand_relu"
#: Name of the backbone's last layer (320 channels at the output stride).
BACKBONE_OUTPUT_LAYER = "block_16_project_BN"
#: Units of the last stage, which multi-grid rates apply to.
LAST_STAGE_UNITS = (14, 15, 16)


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Rounds channel counts like keras.applications.MobileNetV2 does."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def unit_plan(output_stride: int, multi_grid: Optional[Tuple[int, ...]] = None) -> List[Dict]:
    """Per-unit (stride, dilation, channels, expansion) plan of the backbone at an output stride.

    Returns a list of 17 dicts with keys ``block_id``, ``expansion``, ``filters`` (before alpha),
    ``stride``, ``rate`` and ``input_stride`` (the feature stride entering the unit).
    """
    plan = []
    current_stride = 2  # after Conv1
    rate = 1
    block_id = 0
    for t, c, n, s in MOBILENET_V2_STAGES:
        for i in range(n):
            stride = s if i == 0 else 1
            in_stride = current_stride
            if stride > 1 and current_stride >= output_stride:
                unit_stride, unit_rate = 1, rate
                rate *= stride
            else:
                unit_stride, unit_rate = stride, rate
                current_stride *= stride
            plan.append(dict(block_id=block_id, expansion=t, filters=c, stride=unit_stride,
                             rate=unit_rate, input_stride=in_stride))
            block_id += 1
    if multi_grid:
        if len(multi_grid) != len(LAST_STAGE_UNITS):
            raise EdgeDeeplabError(
                f"multi-grid needs {len(LAST_STAGE_UNITS)} rates (one per unit of the last stage), "
                f"got {len(multi_grid)}")
        for unit, mg in zip(LAST_STAGE_UNITS, multi_grid):
            plan[unit]["rate"] = plan[unit]["rate"] * mg
    return plan


def _conv_bn_relu(x, filters, kernel, name, stride=1, rate=1, bn_name=None, relu_name=None,
                  relu6=False):
    x = layers.Conv2D(filters, kernel, strides=stride, dilation_rate=rate, padding="same",
                      use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPS, momentum=BN_MOMENTUM,
                                  name=bn_name or f"{name}_BN")(x)
    return layers.ReLU(6.0 if relu6 else None, name=relu_name or f"{name}_relu")(x)


def _depthwise_bn_relu(x, name, stride=1, rate=1, relu6=False):
    x = layers.DepthwiseConv2D(3, strides=stride, dilation_rate=rate, padding="same",
                               use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPS, momentum=BN_MOMENTUM, name=f"{name}_BN")(x)
    return layers.ReLU(6.0 if relu6 else None, name=f"{name}_relu")(x)


def _inverted_res_block(x, in_channels, expansion, filters, alpha, stride, rate, block_id,
                        endpoints):
    pointwise_filters = make_divisible(int(filters * alpha), 8)
    inputs = x
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    if block_id:
        x = _conv_bn_relu(x, expansion * in_channels, 1, name=prefix + "expand", relu6=True)
        endpoints[prefix + "expand_relu"] = x
    x = _depthwise_bn_relu(x, prefix + "depthwise", stride=stride, rate=rate, relu6=True)
    endpoints[prefix + "depthwise_relu"] = x
    x = layers.Conv2D(pointwise_filters, 1, padding="same", use_bias=False,
                      name=prefix + "project")(x)
    x = layers.BatchNormalization(epsilon=BN_EPS, momentum=BN_MOMENTUM,
                                  name=prefix + "project_BN")(x)
    if in_channels == pointwise_filters and stride == 1:
        x = layers.Add(name=prefix + "add")([inputs, x])
    return x, pointwise_filters


def build_backbone(inputs, config: ModelConfig):
    """MobileNet-v2 features up to ``block_16_project_BN`` at ``config.output_stride``.

    Returns:
        ``(features, endpoints)``: the backbone output tensor and a dict of named intermediate
        tensors (``block_N_expand_relu``, ``block_N_depthwise_relu``) for decoders.
    """
    alpha = float(config.alpha)
    first = make_divisible(32 * alpha, 8)
    x = layers.Conv2D(first, 3, strides=2, padding="same", use_bias=False, name="Conv1")(inputs)
    x = layers.BatchNormalization(epsilon=BN_EPS, momentum=BN_MOMENTUM, name="bn_Conv1")(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    channels = first
    endpoints = {}
    for unit in unit_plan(config.output_stride, config.multi_grid):
        x, channels = _inverted_res_block(x, channels, unit["expansion"], unit["filters"], alpha,
                                          unit["stride"], unit["rate"], unit["block_id"],
                                          endpoints)
    return x, endpoints


def _separable_bn_relu(x, filters, name, rate=1):
    x = _depthwise_bn_relu(x, f"{name}_depthwise", rate=rate)
    return _conv_bn_relu(x, filters, 1, name=f"{name}_pointwise")


def _upsample(x, factor: Tuple[int, int], name: str):
    if tuple(factor) == (1, 1):
        return x
    return layers.UpSampling2D(size=factor, interpolation="bilinear", name=name)(x)


def build_model(config: ModelConfig, backbone_weights: Optional[str] = None,
                name: Optional[str] = None) -> "keras.Model":
    """Builds DeepLab v3+ (or v3 with ``config.decoder=False``) as a flat functional model.

    Args:
        config: the architecture.
        backbone_weights: ``None`` (random init), ``"imagenet"`` (downloads Keras' MobileNetV2
            ImageNet weights for ``config.alpha``; needs internet), or a path to a local ``.h5``
            weights file saved from a ``keras.applications.MobileNetV2``; loaded by layer name.
        name: model name (default ``deeplabv3plus_mobilenetv2`` / ``deeplabv3_mobilenetv2``).

    Returns:
        A ``tf_keras`` model mapping normalized images ``[-1, 1]`` of shape ``(N, H, W, 3)`` to
        logits ``(N, H, W, num_classes)``.

    Example:
        >>> from edge_deeplab.model.config import ModelConfig
        >>> m = build_model(ModelConfig(input_size=(64, 96), num_classes=2, alpha=0.35,
        ...                             output_stride=8))
        >>> tuple(m.output_shape)
        (None, 64, 96, 2)
    """
    config.validate()
    h, w = config.input_size
    os_ = config.output_stride
    inputs = keras.Input((h, w, 3), name="image")
    features, endpoints = build_backbone(inputs, config)
    fh, fw = h // os_, w // os_

    # ASPP: 1x1, three atrous separable 3x3, image pooling; concat; fuse by 1x1.
    f = config.aspp_filters
    branches = [_conv_bn_relu(features, f, 1, name="aspp0")]
    for i, rate in enumerate(config.resolved_aspp_rates(), start=1):
        branches.append(_separable_bn_relu(features, f, name=f"aspp{i}", rate=rate))
    # Image pooling as a global mean (TFLite MEAN: the GPU delegate runs it, and unlike int8
    # AVERAGE_POOL_2D so does XNNPACK) + broadcast back with a bilinear resize from 1x1.
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="image_pooling")(features)
    pooled = _conv_bn_relu(pooled, f, 1, name="image_pooling_conv")
    pooled = _upsample(pooled, (fh, fw), name="image_pooling_upsample")
    branches.append(pooled)
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = _conv_bn_relu(x, f, 1, name="aspp_projection")

    if config.decoder:
        low = endpoints[LOW_LEVEL_LAYER]
        lh, lw = h // 4, w // 4
        x = _upsample(x, (lh // fh, lw // fw), name="decoder_upsample")
        low = _conv_bn_relu(low, config.low_level_filters, 1, name="decoder_low_level")
        x = layers.Concatenate(name="decoder_concat")([x, low])
        x = _separable_bn_relu(x, config.decoder_filters, name="decoder_conv0")
        x = _separable_bn_relu(x, config.decoder_filters, name="decoder_conv1")
        x = layers.Conv2D(config.num_classes, 1, name="logits")(x)
        x = _upsample(x, (4, 4), name="logits_upsample")
    else:
        x = layers.Conv2D(config.num_classes, 1, name="logits")(x)
        x = _upsample(x, (os_, os_), name="logits_upsample")

    default_name = "deeplabv3plus_mobilenetv2" if config.decoder else "deeplabv3_mobilenetv2"
    model = keras.Model(inputs, x, name=name or default_name)
    if backbone_weights:
        load_backbone_weights(model, backbone_weights, alpha=config.alpha)
    return model


def load_backbone_weights(model, weights: str, alpha: float = 1.0) -> int:
    """Loads MobileNetV2 weights into ``model``'s backbone by layer name.

    Args:
        model: a model from :func:`build_model`.
        weights: ``"imagenet"`` or a path to a ``.h5`` file of ``keras.applications.MobileNetV2``
            weights (``include_top`` either way; the head layers are skipped).
        alpha: width multiplier the ImageNet weights must match.

    Returns:
        The number of layers whose weights were loaded.
    """
    import os

    if weights == "imagenet":
        try:
            src = keras.applications.MobileNetV2(
                input_shape=(224, 224, 3), alpha=alpha, include_top=False, weights="imagenet")
        except Exception as e:  # network or cache problems
            raise EdgeDeeplabError(
                f"could not download ImageNet MobileNetV2 weights (alpha={alpha}): {e}; "
                "pass a local .h5 path instead") from None
        return _copy_weights_by_name(src, model)
    if not os.path.isfile(weights):
        raise EdgeDeeplabError(f"backbone weights file not found: {weights}")
    # Build a reference MobileNetV2 of the same width and load the file into it by name, so a
    # file saved with or without the classification top works, then copy layer by layer.
    src = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=alpha,
                                         include_top=False, weights=None)
    try:
        src.load_weights(weights, by_name=True, skip_mismatch=False)
    except Exception as e:
        raise EdgeDeeplabError(f"cannot load backbone weights from {weights}: {e}") from None
    return _copy_weights_by_name(src, model)


def _copy_weights_by_name(src, dst) -> int:
    n = 0
    dst_by_name = {l.name: l for l in dst.layers}
    for layer in src.layers:
        if not layer.weights or layer.name not in dst_by_name:
            continue
        target = dst_by_name[layer.name]
        src_w = layer.get_weights()
        if [w.shape for w in src_w] != [w.shape for w in target.get_weights()]:
            raise EdgeDeeplabError(
                f"backbone weights do not fit layer {layer.name} (alpha mismatch?)")
        target.set_weights(src_w)
        n += 1
    if n == 0:
        raise EdgeDeeplabError("no backbone layer matched the weights by name")
    return n
