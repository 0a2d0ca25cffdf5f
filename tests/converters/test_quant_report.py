"""``edge-deeplab quant-report`` and the litert-quantizer exports (w8a16, --keep-float), through the CLI.

Models have no dilated convs (output stride 32, ASPP rate 1), so nothing here depends on the
dilated-depthwise kernels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_deeplab.app.cli import main
from tests.support.cli import assert_one_line_error

#: On the tiny config (64x64, alpha 0.35, 3 classes).
NO_DILATION = dict(output_stride=32, aspp_rates=(1,))
CULPRIT = "block_3_project"


def _one_line_error(capsys, argv, *needles):
    rc = main(argv)
    return assert_one_line_error(capsys.readouterr().err, *needles, rc=rc)


def _damage(model):
    """Badly scaled weights in one layer: block_3_project gets a weight of 1e4 on an input channel
    that is always zero (its depthwise BN is switched off). The float function is unchanged, but the
    per-channel int8 weight scale is set by the 1e4, so every real weight of the layer rounds to 0."""
    dw_bn = model.get_layer("block_3_depthwise_BN")
    g, b, m, v = dw_bn.get_weights()
    g[0], b[0] = 0.0, -10.0  # ReLU6(-10) = 0: channel 0 is dead on every image
    dw_bn.set_weights([g, b, m, v])
    proj = model.get_layer(CULPRIT)
    (k,) = proj.get_weights()
    k[:, :, 0, :] = 1e4
    proj.set_weights([k])


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    from edge_deeplab.model.model_io import save_model
    from tests.support.tiny import tiny_model

    d = tmp_path_factory.mktemp("qr")
    model, cfg = tiny_model(weights="calibrated", **NO_DILATION)
    _damage(model)
    save_model(model, d / "m.keras", cfg)
    for variant in ("float32", "int8"):
        assert main(["export", str(d / "m.keras"), "--variant", variant,
                     "--out", str(d / f"{variant}.tflite"), "--calibration-steps", "8"]) == 0
    return d


def test_report_points_at_the_damaged_layer(damaged, capsys):
    d = damaged
    capsys.readouterr()
    rc = main(["quant-report", str(d / "int8.tflite"), "--reference", str(d / "float32.tflite"),
               "--images", "4", "--json", str(d / "r.json"), "--plot", str(d / "r.png"),
               "--top", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    r = json.loads((d / "r.json").read_text())
    assert r["worst"][0]["layer"] == CULPRIT
    assert CULPRIT in out.split("worst")[1].splitlines()[2]  # first row of the console table
    layers = r["layers"]
    assert [e["depth"] for e in layers] == list(range(len(layers)))
    assert [e["op_index"] for e in layers] == sorted(e["op_index"] for e in layers)  # graph order
    for key in ("op", "tensor", "layer", "snr_db", "rel_mse", "cosine", "snr_drop_db"):
        assert key in layers[0]
    culprit = next(e for e in layers if e["layer"] == CULPRIT)
    others = [e for e in layers if e["depth"] < culprit["depth"]]
    assert culprit["snr_db"] < 10 and min(e["snr_db"] for e in others) > 20
    assert (d / "r.png").stat().st_size > 10_000
    import cv2

    assert cv2.imread(str(d / "r.png")) is not None


def test_bad_inputs_are_one_line(damaged, tmp_path, capsys, pytestconfig):
    from tests.support.tiny import tiny_tflite

    d = damaged
    other = tiny_tflite(pytestconfig, input_size=(96, 96), **NO_DILATION)  # another input size
    capsys.readouterr()
    q, f = str(d / "int8.tflite"), str(d / "float32.tflite")
    _one_line_error(capsys, ["quant-report", q, "--reference", str(other)],
                    "does not match", "[1, 96, 96, 3]")
    _one_line_error(capsys, ["quant-report", f, "--reference", f], "not quantized")
    _one_line_error(capsys, ["quant-report", q, "--reference", q], "not a float model")
    _one_line_error(capsys, ["quant-report", q, "--reference", str(tmp_path / "nope.tflite")],
                    "not found")
    raw = (d / "int8.tflite").read_bytes()
    assert raw.count(b'"labels":') >= 1
    (tmp_path / "bad.tflite").write_bytes(raw.replace(b'"labels":', b'"labels"!'))  # not JSON now
    _one_line_error(capsys, ["quant-report", str(tmp_path / "bad.tflite"), "--reference", f],
                    "corrupt")  # what the runtime refuses is not compared with a default input
    _one_line_error(capsys, ["export", str(d / "m.keras"), "--variant", "int8", "--keep-float",
                             "no_such_layer*", "--out", str(tmp_path / "x.tflite")],
                    "no_such_layer*", "matches no layer")
    _one_line_error(capsys, ["export", str(d / "m.keras"), "--variant", "float16", "--keep-float",
                             "aspp0", "--out", str(tmp_path / "x.tflite")], "int8 and w8a16")
    _one_line_error(capsys, ["export", str(d / "m.keras"), "--variant", "w8a16", "--io-type",
                             "uint8", "--out", str(tmp_path / "x.tflite")], "uint8")
    assert not (tmp_path / "x.tflite").exists()


def test_keep_float_leaves_the_named_layers_float(damaged, capsys):
    d = damaged
    out = d / "kf.tflite"
    assert main(["export", str(d / "m.keras"), "--variant", "int8", "--keep-float", "block_5_*",
                 "--keep-float", "aspp0", "--out", str(out), "--calibration-steps", "8"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(out), "--json", "--no-gpu"]) == 0
    r = json.loads(capsys.readouterr().out)
    expected = {"block_5_expand", "block_5_depthwise", "block_5_project", "block_5_add", "aspp0"}
    assert set(r["float_layers"]) == expected
    assert r["quantization"] == "mixed" and r["scheme"] == "w8a8+float"
    assert r["activations"].get("float32") == len(expected)
    # everything else computes in int8
    assert r["activations"]["int8"] == sum(r["ops"].values()) - r["ops"].get("QUANTIZE", 0) \
        - r["ops"].get("DEQUANTIZE", 0) - len(expected)
    ex = r["metadata"]["export"]
    assert ex["variant"] == "int8" and ex["keep_float"]["patterns"] == ["block_5_*", "aspp0"]
    assert set(ex["keep_float"]["layers"]) == expected
    assert json.loads(out.with_suffix(".json").read_text())["export"]["keep_float"] == ex["keep_float"]
    assert r["cpu"]["method"] == "xnnpack-delegate" and r["cpu"]["fully_delegated"] is True
    assert main(["analyze", str(out), "--no-gpu"]) == 0
    text = capsys.readouterr().out
    assert "float layers (5): aspp0, block_5_add" in text and "keep-float block_5_*, aspp0" in text


@pytest.mark.parametrize("known_by", ["embedded", "sidecar"])
def test_quant_report_feeds_what_the_runtime_feeds_a_model_normalizing_in_its_graph(pytestconfig, tmp_path,
                                                                                       known_by):
    """A model that normalizes in its graph, known by its embedded metadata (standard metadata
    saying raw pixels over our JSON) or by its JSON sidecar alone, and a wide image: quant-report's
    input tensor is the runtime's own, letterbox padding included, and that padding is the graph's
    mean (what training padded with), not pixel 0."""
    from ai_edge_litert.interpreter import Interpreter

    from converters.calibration import structured_images
    from converters.quant_report import _model_input
    from edge_deeplab.runtime import open_runner
    from tests.support.bench_models import sidecar_only
    from tests.support.tiny import tiny_tflite

    path = tiny_tflite(pytestconfig, "int8", options={"normalize_in_graph": True})
    if known_by == "sidecar":
        path = sidecar_only(path, tmp_path / "in_graph.tflite")
    image = next(structured_images(1, (32, 64), seed=3))
    detail = Interpreter(model_path=str(path)).get_input_details()[0]
    got, box = _model_input(path, detail)(image)
    with open_runner(path) as runner:
        want, want_box = runner.model_input()(image)
    assert box == want_box == (16, 0, 32, 64)  # half the input is padding
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert want[0, 0, 0].tolist() == [128, 128, 128]  # the graph's mean 127.5, as raw uint8 pixels
