"""DeepLab v3+ / MobileNet-v2 model: shapes, geometry, flat graph, ImageNet-name compatibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.model.config import ModelConfig
from edge_deeplab.model.deeplab import LAST_STAGE_UNITS, unit_plan
from tests.support.cli import assert_one_line_error
from tests.support.tiny import seeded_model

# Each build covers one output stride x decoder combination, and between them every alpha,
# non-square inputs and unusual class counts (builds are the slow part on 2 cores).
pytestmark = pytest.mark.kernels  # CI runs these again with oneDNN on

BUILDS = [
    dict(input_size=(64, 96), output_stride=8, decoder=True, alpha=0.35, num_classes=3),
    dict(input_size=(64, 64), output_stride=8, decoder=False, alpha=0.5, num_classes=1),
    dict(input_size=(96, 64), output_stride=16, decoder=True, alpha=0.75, num_classes=21,
         multi_grid=(1, 2, 4)),
    dict(input_size=(64, 64), output_stride=16, decoder=False, alpha=1.0, num_classes=7),
    dict(input_size=(64, 128), output_stride=32, decoder=True, alpha=0.35, num_classes=2,
         aspp_rates=(1, 2, 3)),
    dict(input_size=(64, 64), output_stride=32, decoder=False, alpha=0.35, num_classes=5),
]

STOCK_LAYERS = {
    "InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add", "Concatenate",
    "GlobalAveragePooling2D", "UpSampling2D",
}


def _id(d):
    return f"os{d['output_stride']}-{'v3+' if d['decoder'] else 'v3'}-a{d['alpha']}-c{d['num_classes']}"


@pytest.fixture(scope="module", params=BUILDS, ids=_id)
def built(request):
    cfg = ModelConfig(**request.param)
    return cfg, seeded_model(cfg)


def test_output_shape_and_forward(built):
    cfg, model = built
    h, w = cfg.input_size
    assert tuple(model.output_shape) == (None, h, w, cfg.num_classes)
    x = np.random.default_rng(0).uniform(-1, 1, (1, h, w, 3)).astype(np.float32)
    y = model(x, training=False).numpy()
    assert y.shape == (1, h, w, cfg.num_classes)
    assert np.isfinite(y).all()
    assert model.name == ("deeplabv3plus_mobilenetv2" if cfg.decoder else "deeplabv3_mobilenetv2")


def test_backbone_stride_and_dilations_follow_plan(built):
    cfg, model = built
    h, w = cfg.input_size
    feat = model.get_layer("block_16_project_BN").output_shape
    assert feat[1:3] == (h // cfg.output_stride, w // cfg.output_stride)
    plan = unit_plan(cfg.output_stride, cfg.multi_grid)
    for unit in plan:
        name = f"block_{unit['block_id']}_depthwise" if unit["block_id"] else "expanded_conv_depthwise"
        layer = model.get_layer(name)
        assert tuple(layer.strides) == (unit["stride"],) * 2, name
        assert tuple(layer.dilation_rate) == (unit["rate"],) * 2, name
    for i, rate in enumerate(cfg.resolved_aspp_rates(), start=1):
        assert tuple(model.get_layer(f"aspp{i}_depthwise").dilation_rate) == (rate, rate)
    # decoder presence
    names = {l.name for l in model.layers}
    assert ("decoder_concat" in names) == cfg.decoder
    if cfg.decoder:
        assert model.get_layer("decoder_low_level_relu").output_shape[1:3] == (h // 4, w // 4)
        assert model.get_layer("decoder_low_level_relu").output_shape[-1] == cfg.low_level_filters


def test_flat_graph_of_stock_layers(built):
    from edge_deeplab.core._tf import keras

    _, model = built
    for layer in model.layers:
        assert not isinstance(layer, keras.Model), f"nested model {layer.name}"
        cls = type(layer)
        assert cls.__name__ in STOCK_LAYERS, f"{layer.name}: {cls.__name__}"
        assert cls.__module__.startswith("tf_keras."), f"{layer.name}: {cls.__module__}"
        assert len(layer._inbound_nodes) == 1, f"{layer.name} shared"
    assert not any("lambda" in type(l).__name__.lower() for l in model.layers)
    # the model is one graph: every layer is reachable from the single input
    assert len(model.inputs) == 1 and len(model.outputs) == 1


def test_width_multiplier_channels(built):
    from edge_deeplab.model.deeplab import make_divisible

    cfg, model = built
    assert model.get_layer("Conv1").filters == make_divisible(32 * cfg.alpha, 8)
    assert model.get_layer("block_16_project").filters == make_divisible(int(320 * cfg.alpha), 8)


@pytest.mark.parametrize("size,os_", [((100, 100), 16), ((64, 72), 16), ((40, 40), 32), ((12, 12), 8)])
def test_non_multiple_input_size_rejected(size, os_):
    with pytest.raises(EdgeDeeplabError) as e:
        ModelConfig(input_size=size, output_stride=os_)
    assert_one_line_error(e, "not a multiple of the output stride", str(os_))


@pytest.mark.parametrize("bad", [dict(output_stride=4), dict(alpha=0.6), dict(num_classes=0),
                                 dict(aspp_rates=(0, 6)), dict(multi_grid=()),
                                 dict(num_classes=2, labels=("a",))])
def test_invalid_config_one_line_errors(bad):
    with pytest.raises(EdgeDeeplabError) as e:
        ModelConfig(**bad)
    assert_one_line_error(e)


@pytest.mark.parametrize("os_", [8, 16, 32])
def test_unit_plan_strides_become_dilation(os_):
    plan = unit_plan(os_)
    assert len(plan) == 17
    # Conv1 strides 2; the product of unit strides brings the total to exactly the output stride.
    assert 2 * math.prod(u["stride"] for u in plan) == os_
    stride, rate = 2, 1
    for u in plan:
        assert u["input_stride"] == stride
        nominal = 2 if u["block_id"] in (1, 3, 6, 13) else 1
        if nominal == 2 and stride >= os_:
            # would stride past the output stride: runs at stride 1, with the current rate, and
            # every later unit dilates twice as much
            assert (u["stride"], u["rate"]) == (1, rate)
            rate *= 2
        else:
            assert (u["stride"], u["rate"]) == (nominal, rate)
            stride *= nominal
    assert stride == os_


def test_unit_plan_known_rates():
    r8 = [u["rate"] for u in unit_plan(8)]
    assert r8 == [1] * 7 + [2] * 7 + [4] * 3
    r16 = [u["rate"] for u in unit_plan(16)]
    assert r16 == [1] * 14 + [2] * 3
    assert all(u["rate"] == 1 for u in unit_plan(32))


def test_multi_grid_multiplies_last_stage_rates():
    base = {u["block_id"]: u["rate"] for u in unit_plan(16)}
    mg = {u["block_id"]: u["rate"] for u in unit_plan(16, (1, 2, 4))}
    assert [mg[i] for i in LAST_STAGE_UNITS] == [base[i] * m for i, m in zip(LAST_STAGE_UNITS, (1, 2, 4))]
    assert all(mg[i] == base[i] for i in base if i not in LAST_STAGE_UNITS)
    assert [u["rate"] for u in unit_plan(8, (1, 2, 4))][-3:] == [4, 8, 16]
    with pytest.raises(EdgeDeeplabError, match="multi-grid needs 3 rates"):
        unit_plan(16, (1, 2))


def test_aspp_rates_derived_from_output_stride():
    assert ModelConfig(output_stride=16).resolved_aspp_rates() == (6, 12, 18)
    assert ModelConfig(output_stride=8).resolved_aspp_rates() == (12, 24, 36)
    assert ModelConfig(output_stride=16, aspp_rates=(2, 4, 8)).resolved_aspp_rates() == (2, 4, 8)


def test_imagenet_weights_load_by_name_and_match_features(tmp_path):
    """Offline ImageNet-compatibility: MobileNetV2 .h5 weights -> our backbone, same features at OS 32."""
    from edge_deeplab.core._tf import keras
    from edge_deeplab.model.deeplab import BACKBONE_OUTPUT_LAYER

    alpha = 0.35
    ref = keras.applications.MobileNetV2(weights=None, include_top=False, alpha=alpha,
                                         input_shape=(224, 224, 3))
    rng = np.random.default_rng(7)
    for layer in ref.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = ws
            ws = [rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, b.shape),
                  rng.normal(0, 0.2, m.shape), rng.uniform(0.5, 2.0, v.shape)]
        else:
            ws = [w + rng.normal(0, 0.02, w.shape) for w in ws]
        layer.set_weights([np.asarray(w, np.float32) for w in ws])
    path = tmp_path / "mobilenet_v2_random.h5"
    ref.save_weights(str(path))

    cfg = ModelConfig(input_size=(224, 224), output_stride=32, alpha=alpha, num_classes=2)
    ours = seeded_model(cfg, backbone_weights=str(path))
    x = rng.uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
    f_ref = keras.Model(ref.input, ref.get_layer(BACKBONE_OUTPUT_LAYER).output)(x, training=False).numpy()
    f_ours = keras.Model(ours.input, ours.get_layer(BACKBONE_OUTPUT_LAYER).output)(x, training=False).numpy()
    assert f_ours.shape == f_ref.shape == (2, 7, 7, f_ref.shape[-1])
    assert np.abs(f_ref).max() > 0.1  # a real check, not zeros against zeros
    np.testing.assert_allclose(f_ours, f_ref, atol=1e-5, rtol=0)

    # every backbone layer with weights got them (MobileNetV2's 1280-channel head conv
    # Conv_1/Conv_1_bn, beyond block_16, is not part of the DeepLab backbone)
    ours_names = {l.name for l in ours.layers}
    matched = 0
    for layer in ref.layers:
        if layer.get_weights() and layer.name not in ("Conv_1", "Conv_1_bn"):
            assert layer.name in ours_names, layer.name
            for a, b in zip(layer.get_weights(), ours.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
            matched += 1
    assert matched == 2 + 4 + 16 * 6  # Conv1+BN, expanded_conv dw/project (+BNs), 16 blocks x 6

    # a width mismatch is a one-line error, not a silent partial load
    with pytest.raises(EdgeDeeplabError):
        seeded_model(ModelConfig(input_size=(64, 64), alpha=0.5, num_classes=2),
                     backbone_weights=str(path))
    with pytest.raises(EdgeDeeplabError, match="not found"):
        seeded_model(ModelConfig(input_size=(64, 64), alpha=alpha, num_classes=2),
                     backbone_weights=str(tmp_path / "missing.h5"))


def test_build_cli_saves_model_and_rejects_bad_input(tmp_path, capsys):
    from edge_deeplab.app.cli import main
    from edge_deeplab.model.model_io import load_model

    out = tmp_path / "m.keras"
    rc = main(["build", "--out", str(out), "--input-size", "64x96", "--alpha", "0.35",
               "--num-classes", "4", "--output-stride", "8", "--no-decoder", "--labels", "a,b,c,d"])
    assert rc == 0
    model, cfg, meta = load_model(out)
    assert cfg.input_size == (64, 96) and cfg.output_stride == 8 and not cfg.decoder
    assert meta["labels"] == ["a", "b", "c", "d"]
    assert tuple(model.output_shape) == (None, 64, 96, 4)
    capsys.readouterr()

    rc = main(["build", "--out", str(tmp_path / "bad.keras"), "--input-size", "100"])
    assert_one_line_error(capsys.readouterr().err, "not a multiple of the output stride", rc=rc)
    assert not (tmp_path / "bad.keras").exists()

    rc = main(["build", "--out", str(tmp_path / "w.keras"), "--input-size", "64",
               "--backbone-weights", str(tmp_path / "nope.h5")])
    assert_one_line_error(capsys.readouterr().err, "nope.h5", rc=rc)
