"""``edge_deeplab.model.summary`` / ``edge-deeplab summary``: params, multiply-adds, shapes, receptive field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_deeplab.model.config import ModelConfig
from edge_deeplab.model.summary import format_summary, receptive_fields, summarize
from tests.support.cli import assert_one_line_error

_CACHE = {}


def _summary(**kw):
    """Summaries are cached per config: building models is the slow part on 2 cores."""
    key = tuple(sorted(kw.items()))
    if key not in _CACHE:
        _CACHE[key] = summarize(ModelConfig(**kw))
    return _CACHE[key]


def _independent_macs(model):
    """Multiply-adds from weight shapes x output positions (a second, independent formula)."""
    total = 0
    for layer in model.layers:
        cls = type(layer).__name__
        if cls in ("Conv2D", "DepthwiseConv2D"):
            kernel = layer.weights[0]
            _, ho, wo, _ = layer.output_shape
            total += int(np.prod(kernel.shape)) * ho * wo
    return total


@pytest.fixture(scope="module")
def small():
    from tests.support.tiny import seeded_model

    cfg = ModelConfig(input_size=(64, 96), num_classes=3, alpha=0.35, output_stride=8)
    model = seeded_model(cfg)
    return cfg, model, summarize(cfg, model=model)


def test_params_and_multiply_adds(small):
    cfg, model, s = small
    assert s["params"]["total"] == model.count_params()
    assert s["params"]["trainable"] + s["params"]["non_trainable"] == s["params"]["total"]
    n_bn = sum(type(l).__name__ == "BatchNormalization" for l in model.layers)
    assert s["params"]["non_trainable"] == sum(model.get_layer(l.name).weights[2].shape[0] * 2
                                               for l in model.layers
                                               if type(l).__name__ == "BatchNormalization")
    assert n_bn > 50
    assert s["multiply_adds"] == _independent_macs(model)
    # bilinear upsampling is reported apart: 4 multiply-adds per output element of each resize
    ups = [l for l in model.layers if type(l).__name__ == "UpSampling2D"]
    assert s["upsample_multiply_adds"] == sum(4 * int(np.prod(l.output_shape[1:])) for l in ups)
    assert "upsampling" in s["multiply_adds_note"]
    json.dumps(s)


def test_shapes_stride_and_branches(small):
    cfg, _, s = small
    h, w = cfg.input_size
    assert s["output_stride"] == 8
    assert s["input_shape"] == [h, w, 3] and s["output_shape"] == [h, w, 3]
    assert s["backbone_output"]["shape"][:2] == [h // 8, w // 8]
    strides = [st["stride"] for st in s["stages"]]
    assert strides == [2, 2, 4, 8, 8, 8, 8, 8]
    assert [st["shape"][:2] for st in s["stages"]][-1] == [h // 8, w // 8]
    assert s["stages"][4]["rates"] == [1, 2, 2, 2] and s["stages"][7]["rates"] == [4]
    assert s["aspp"]["rates"] == [12, 24, 36]
    br = s["aspp"]["branches"]
    assert [b["name"] for b in br] == ["aspp0", "aspp1", "aspp2", "aspp3", "image_pooling"]
    assert all(b["shape"] == [h // 8, w // 8, 256] for b in br)
    assert br[-1]["pooled_shape"] == [1, 1, 256] and br[-1]["receptive_field"] == "global"
    assert s["aspp"]["concat"] == [h // 8, w // 8, 5 * 256]
    assert s["low_level"]["shape"][:2] == [h // 4, w // 4]
    assert s["decoder"]["concat"] == [h // 4, w // 4, 256 + 48]
    text = format_summary(s)
    for word in ("parameters", "multiply-adds", "output stride 8", "aspp3", "receptive field"):
        assert word in text


def test_receptive_field_walk_on_a_hand_built_graph():
    from edge_deeplab.core._tf import keras

    x = keras.Input((32, 32, 3))
    a = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="a")(x)            # 3, jump 2
    b = keras.layers.DepthwiseConv2D(3, dilation_rate=2, padding="same", name="b")(a)  # 3+2*2*2=11
    c = keras.layers.Conv2D(4, 1, name="c")(b)                                        # 11
    u = keras.layers.UpSampling2D(2, interpolation="bilinear", name="u")(c)            # 11+2=13, jump 1
    p = keras.layers.AveragePooling2D(16, name="p")(b)                                 # global
    pu = keras.layers.UpSampling2D(16, interpolation="bilinear", name="pu")(p)
    cat = keras.layers.Concatenate(name="cat")([c, pu])
    rf = receptive_fields(keras.Model(x, [u, cat]))
    assert rf["a"]["rf"] == [3, 3] and rf["a"]["jump"] == [2.0, 2.0]
    assert rf["b"]["rf"] == [11, 11]
    assert rf["c"]["rf"] == [11, 11]
    assert rf["u"]["rf"] == [13, 13] and rf["u"]["jump"] == [1.0, 1.0]
    assert rf["p"]["rf"] is None and rf["p"]["global"]
    assert rf["cat"]["rf"] == [11, 11] and rf["cat"]["global"]


@pytest.mark.parametrize("os_", [8, 16, 32])
def test_dilation_keeps_mobilenet_receptive_field(os_):
    # MobileNet-v2's last feature map sees 491x491 pixels; trading strides for dilation keeps it.
    s = _summary(input_size=(64, 64), num_classes=2, alpha=0.35, output_stride=os_, decoder=False)
    assert s["receptive_field"]["backbone"] == [491, 491]
    assert s["output_stride"] == os_


def test_multi_grid_widens_receptive_field():
    rb = _summary(input_size=(64, 64), num_classes=2, alpha=0.35, output_stride=16,
                  decoder=False)["receptive_field"]
    rm = _summary(input_size=(64, 64), num_classes=2, alpha=0.35, output_stride=16, decoder=False,
                  multi_grid=(1, 2, 4))["receptive_field"]
    # OS 16: units 14-16 at rates 2/4/8 instead of 2/2/2: +(2+6)*2*16 = +256 px
    assert rm["backbone"][0] - rb["backbone"][0] == 256


def test_mobilenet_v2_multiply_adds_match_the_paper():
    """At 224x224 / OS 32 the backbone costs what MobileNet-v2 is known for (~300 M with its head)."""
    cfg = ModelConfig(input_size=(224, 224), num_classes=2, alpha=1.0, output_stride=32,
                      decoder=False)
    s = summarize(cfg)
    backbone = sum(l["multiply_adds"] for l in s["layers"]
                   if l["name"].startswith(("Conv1", "expanded_conv", "block_")))
    head = 7 * 7 * 320 * 1280 + 1280 * 1000  # Conv_1 + classifier, not part of DeepLab
    assert abs((backbone + head) / 1e6 - 300) < 10


def test_cli_summary(tmp_path, capsys):
    from edge_deeplab.app.cli import main

    args = ["summary", "--input-size", "64", "--alpha", "0.35", "--num-classes", "3",
            "--no-decoder"]
    assert main(args + ["--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["output_stride"] == 16 and s["params"]["total"] > 0 and s["multiply_adds"] > 0
    assert s["decoder"] is None and s["config"]["decoder"] is False

    from edge_deeplab.model.model_io import save_model
    from tests.support.tiny import tiny_model

    model, cfg = tiny_model(output_stride=32)
    save_model(model, tmp_path / "m.keras", cfg)
    assert main(["summary", "--model", str(tmp_path / "m.keras")]) == 0
    out = capsys.readouterr().out
    assert "multiply-adds" in out and "ASPP" in out and "output stride 32" in out

    rc = main(["summary", "--input-size", "70"])
    assert_one_line_error(capsys.readouterr().err, "multiple of the output stride", rc=rc, code=2)
