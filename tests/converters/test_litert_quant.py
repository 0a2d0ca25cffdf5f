"""w8a16 (int8 weights, int16 activations) through litert-quantizer keeps a trained model's accuracy.

The model is tiny and has no dilated convs (output stride 32, ASPP rate 1), so it trains with the
default kernels on every CPU; scored with the project's own `edge-deeplab eval`.
"""

from __future__ import annotations

import json

import pytest

from edge_deeplab.app.cli import main
from edge_deeplab.model.config import ModelConfig

TINY = ModelConfig(input_size=(64, 64), num_classes=5, alpha=0.35, output_stride=32,
                   aspp_rates=(1,), aspp_filters=16, low_level_filters=8, decoder_filters=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from edge_deeplab.data.synthetic import generate_synthetic
    from edge_deeplab.training.train import TrainConfig, train

    d = tmp_path_factory.mktemp("w8a16")
    data = generate_synthetic(d / "syn", num_train=48, num_val=12, size=64)
    tc = TrainConfig(dataset="synthetic", data_dir=str(data), steps=300, batch_size=8, lr=3e-3,
                     checkpoint_every=300, bn_momentum=0.9, val_split=None, recalibrate_batches=4)
    train(TINY, tc, d / "run", verbose=0)
    return d, data


def _eval(model, data, out):
    assert main(["eval", str(model), "--dataset", "synthetic", "--data-dir", str(data),
                 "--split", "val", "--json", str(out), "--quiet"]) == 0
    return json.loads(out.read_text())["miou"]


def test_w8a16_keeps_accuracy_and_has_int16_activations(trained, capsys):
    d, data = trained
    miou = {}
    for variant in ("float32", "int8", "w8a16"):
        path = d / f"{variant}.tflite"
        calib = [] if variant == "float32" else [
            "--calibration-dataset", "synthetic", "--data-dir", str(data), "--calibration-steps", "24"]
        assert main(["export", str(d / "run"), "--variant", variant, "--out", str(path), *calib]) == 0
        miou[variant] = _eval(path, data, d / f"{variant}.json")
    print("mIoU", miou)
    assert miou["float32"] > 0.3, miou  # it learned something
    assert miou["w8a16"] >= miou["int8"], miou
    assert abs(miou["w8a16"] - miou["float32"]) < 0.01, miou

    capsys.readouterr()
    assert main(["analyze", str(d / "w8a16.tflite"), "--json", "--no-gpu"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["scheme"] == "w8a16" and r["activations"].get("int16", 0) > 0
    assert set(r["activations"]) == {"int16"}
    assert r["inputs"][0]["dtype"] == "float32"  # default: LiteRT CompiledModel has no int16 buffers
    ex = r["metadata"]["export"]
    assert ex["variant"] == "w8a16" and ex["quantizer"]["recipe"] == "static_wi8_ai16"
    assert ex["calibration"]["source"] == "dataset:synthetic"
    # XNNPACK has no int16-activation kernels: analyze must say the CPU runs reference kernels.
    assert r["cpu"]["fully_delegated"] is False and r["cpu"]["fallback_ops"].get("CONV_2D")

    # and the per-layer report sees int16 tensors with a high SNR all along
    assert main(["quant-report", str(d / "w8a16.tflite"), "--reference",
                 str(d / "float32.tflite"), "--dataset", "synthetic", "--data-dir", str(data),
                 "--images", "4", "--json", str(d / "r.json")]) == 0
    rep = json.loads((d / "r.json").read_text())
    assert {e["dtype"] for e in rep["layers"]} == {"int16"}
    assert rep["output"]["snr_db"] > 20


def test_w8a16_that_tflite_cannot_prepare_is_one_line_naming_the_layer(tmp_path, capsys):
    """An untrained default model calibrated on a few generated images gets an int16 activation
    range too narrow for its weights: TFLite then refuses to prepare that op. The export says where
    and what to do, and writes nothing (found exporting the default 512x512 model for a benchmark;
    64x64 shows it too)."""
    model, out = tmp_path / "m.keras", tmp_path / "w8a16.tflite"
    assert main(["build", "--out", str(model), "--input-size", "64", "--num-classes", "21"]) == 0
    capsys.readouterr()
    rc = main(["export", str(model), "--variant", "w8a16", "--calibration-steps", "8",
               "--out", str(out)])
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert rc != 0
    assert len(err) == 1, err
    assert "does not prepare in TFLite at block_" in err[0] and "--keep-float '" in err[0], err
    assert not out.exists() and not out.with_suffix(".json").exists()
