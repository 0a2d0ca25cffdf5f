"""w8a16 (int8 weights, int16 activations) through litert-quantizer keeps a trained model's accuracy.

The suite's trained model (``trained`` fixture, :mod:`tests.support.trained`), exported through the
CLI from its run directory and scored with the project's own ``edge-deeplab eval``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_deeplab.app.cli import main


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """``(folder, data)``: float32, int8 and w8a16 exported by ``edge-deeplab export`` from the
    trained run (int8 and w8a16 calibrated on 24 of its training images)."""
    d = tmp_path_factory.mktemp("w8a16")
    for variant in ("float32", "int8", "w8a16"):
        calib = [] if variant == "float32" else [
            "--calibration-dataset", "folder", "--data-dir", trained["data"],
            "--calibration-steps", "24"]
        assert main(["export", trained["run"], "--variant", variant,
                     "--out", str(d / f"{variant}.tflite"), *calib]) == 0
    return d, trained["data"]


def _eval(model, data, out):
    assert main(["eval", str(model), "--dataset", "folder", "--data-dir", str(data),
                 "--split", "val", "--json", str(out), "--quiet"]) == 0
    return json.loads(out.read_text())["miou"]


def _argmax(path, images):
    from edge_deeplab.runtime import open_runner

    with open_runner(str(path)) as r:
        return np.stack([r.predict(i).argmax(-1) for i in images])


def test_w8a16_keeps_accuracy_and_has_int16_activations(exported, capsys):
    """int16 activations leave only the int8 weights' error: w8a16 keeps float's mIoU (within half
    a point) and follows the float32 export on more pixels than int8 PTQ, whose int8 weights are
    the same (measured: mIoU float 0.6440, int8 0.6451, w8a16 0.6448; argmax agreement with float
    0.9950 vs 0.9868). Its mIoU against int8's is left to the quickstart: the two differ only by
    activation rounding, a tenth of a point either way (here int8 is 0.03 points ahead)."""
    from edge_deeplab.data import load_dataset

    d, data = exported
    miou = {v: _eval(d / f"{v}.tflite", data, d / f"{v}.eval.json") for v in ("float32", "int8", "w8a16")}
    images = [img for _, img, _ in load_dataset("folder", data, "val")]
    ref = _argmax(d / "float32.tflite", images)
    agree = {v: float((_argmax(d / f"{v}.tflite", images) == ref).mean()) for v in ("int8", "w8a16")}
    with capsys.disabled():
        print("mIoU", miou, "argmax agreement with float32", agree)
    assert miou["float32"] > 0.5, miou  # the trained model
    assert abs(miou["w8a16"] - miou["float32"]) < 0.005, miou
    assert agree["w8a16"] > agree["int8"] + 0.005, agree

    capsys.readouterr()
    assert main(["analyze", str(d / "w8a16.tflite"), "--json", "--no-gpu"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["scheme"] == "w8a16" and r["activations"].get("int16", 0) > 0
    assert set(r["activations"]) == {"int16"}
    assert r["inputs"][0]["dtype"] == "float32"  # default: LiteRT CompiledModel has no int16 buffers
    ex = r["metadata"]["export"]
    assert ex["variant"] == "w8a16" and ex["quantizer"]["recipe"] == "static_wi8_ai16"
    assert ex["calibration"]["source"] == "dataset:folder"
    # XNNPACK has no int16-activation kernels: analyze must say the CPU runs reference kernels.
    assert r["cpu"]["fully_delegated"] is False and r["cpu"]["fallback_ops"].get("CONV_2D")

    # and the per-layer report sees int16 tensors with a high SNR all along
    assert main(["quant-report", str(d / "w8a16.tflite"), "--reference",
                 str(d / "float32.tflite"), "--dataset", "folder", "--data-dir", str(data),
                 "--images", "4", "--json", str(d / "r.json")]) == 0
    rep = json.loads((d / "r.json").read_text())
    assert {e["dtype"] for e in rep["layers"]} == {"int16"}
    assert rep["output"]["snr_db"] > 20


def test_w8a16_of_an_untrained_model_widens_the_ranges_tflite_would_refuse(tmp_path, capsys):
    """An untrained default model calibrated on a few generated images gets int16 activation
    ranges too narrow for TFLite's kernels (a fused RELU6 bound no longer fits an int32 at that
    scale): TFLite refused to prepare the op ("requantization overflows" at block_4_depthwise;
    found exporting the default 512x512 model for a benchmark; 64x64 shows it too). The export
    now widens those ranges to the kernels' floor, says how many, and the model prepares."""
    from ai_edge_litert.interpreter import Interpreter

    from converters.litert_quant import MIN_INT16_RANGE

    model, out = tmp_path / "m.keras", tmp_path / "w8a16.tflite"
    assert main(["build", "--out", str(model), "--input-size", "64", "--num-classes", "21"]) == 0
    capsys.readouterr()
    rc = main(["export", str(model), "--variant", "w8a16", "--calibration-steps", "8",
               "--out", str(out)])
    said = capsys.readouterr().out
    assert rc == 0
    n = json.loads(out.with_suffix(".json").read_text())["export"]["widened_ranges"]
    assert n >= 1 and f"widened {n} activation ranges" in said
    it = Interpreter(model_path=str(out))
    it.allocate_tensors()  # what refused before
    scales = [d["quantization"][0] for d in it.get_tensor_details()
              if d["dtype"] == np.int16 and d["quantization"][0]]
    # 6 / scale must fit an int32 for every fused RELU6 bound
    assert scales and 6.0 / min(scales) < 2 ** 31
    assert min(scales) >= MIN_INT16_RANGE / 32767 * 0.999
