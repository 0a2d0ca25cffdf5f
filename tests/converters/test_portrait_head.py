"""``export --head person`` (issue 19 item 7): the person probability at the decoder's 1/4 resolution.

Exports of the small trained model (:mod:`tests.support.trained`: 64x64, five synthetic classes,
person among them) are made through the CLI. References are independent of the head's code: the
Keras model's ``logits`` layer and a NumPy softmax, the full-head export run by the LiteRT
interpreter, MediaPipe Tasks in its own venv.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.support.cli import assert_one_line_error

pytestmark = pytest.mark.kernels

PERSON = 1  # tests.support.trained.TRAINED_MODEL's labels: background, person, ball, box, cone
HEADS = ("float32", "float16", "int8", "qat-int8")
HELPER = Path(__file__).resolve().parents[2] / "tests" / "support" / "mediapipe_segment.py"


@pytest.fixture(scope="module")
def heads(trained, tmp_path_factory):
    from edge_deeplab.app.cli import main

    d = tmp_path_factory.mktemp("portrait_head")
    out = {}
    for variant in HEADS:
        path = d / f"person_{variant}.tflite"
        extra = ["--calibration-dataset", "folder", "--data-dir", trained["data"],
                 "--calibration-steps", "32"] if variant == "int8" else []
        assert main(["export", trained["run"], "--variant", variant, "--head", "person",
                     "--out", str(path), *extra]) == 0
        out[variant] = path
    return out


def _held_out(trained, n=24):
    data = Path(trained["data"])
    stems = (data / "val.txt").read_text().split()[:n]
    return [cv2.cvtColor(cv2.imread(str(data / "images" / f"{s}.png")), cv2.COLOR_BGR2RGB) for s in stems]


def _run(path, images):
    """Outputs of a .tflite on uint8 RGB images through the bare LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for im in images:
        x = im.astype(np.float32) / 127.5 - 1.0
        if inp["dtype"] != np.float32:
            s, z = inp["quantization"]
            x = np.clip(np.round(x / s + z), np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max)
        it.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
        it.invoke()
        y = it.get_tensor(out["index"])[0]
        if out["dtype"] != np.float32:
            s, z = out["quantization"]
            y = (y.astype(np.float32) - z) * s
        ys.append(y)
    return np.stack(ys), out


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _iou(a, b):
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_float_head_is_the_person_softmax_of_the_decoder_logits(trained, heads):
    import tf_keras

    images = _held_out(trained)
    y, out = _run(heads["float32"], images)
    assert tuple(out["shape"]) == (1, 16, 16, 1) and out["dtype"] == np.float32
    assert 0.0 <= y.min() and y.max() <= 1.0
    model = tf_keras.models.load_model(trained["keras"], compile=False)
    logits = tf_keras.Model(model.input, model.get_layer("logits").output)
    ref = _softmax(logits.predict(np.stack(images).astype(np.float32) / 127.5 - 1.0, verbose=0))
    assert ref.shape[1:3] == (16, 16)
    np.testing.assert_allclose(y[..., 0], ref[..., PERSON], atol=1e-4)
    assert (ref[..., PERSON] > 0.5).mean() > 0.02  # there are people to find


def _upsampled_vs_full(trained, heads, variant):
    """The head's probability upsampled to the input vs the same variant's full-head export's
    person softmax (NumPy): ``(head output info, mean abs difference, IoU of the > 0.5 masks)``."""
    images = _held_out(trained)
    head, out = _run(heads[variant], images)
    full, full_out = _run(trained["exports"][variant], images)
    assert tuple(full_out["shape"]) == (1, 64, 64, 5)
    up = np.stack([cv2.resize(h[..., 0], (64, 64), interpolation=cv2.INTER_LINEAR) for h in head])
    ref = _softmax(full)[..., PERSON]
    assert (ref > 0.5).mean() > 0.02  # there are people to find
    return out, head, float(np.abs(up - ref).mean()), _iou(up > 0.5, ref > 0.5)


# Measured (trained model, Zen 4): mean abs difference 0.0096 / 0.0103 / 0.0096 and IoU 0.918 /
# 0.916 / 0.879 for float32 / int8 / qat-int8. The IoU is below 1 by construction: the full head
# upsamples logits and then takes the softmax, the person head the reverse, and the small 64x64
# scenes' people are mostly boundary at 1/4 resolution (a 16x16 grid).
@pytest.mark.parametrize("variant,min_iou", [("float32", 0.9), ("float16", 0.9), ("int8", 0.88),
                                             ("qat-int8", 0.85)])
def test_upsampled_head_agrees_with_the_full_head_export(trained, heads, variant, min_iou):
    out, y, mad, iou = _upsampled_vs_full(trained, heads, variant)
    assert tuple(out["shape"]) == (1, 16, 16, 1) and out["dtype"] == np.float32
    assert 0.0 <= y.min() and y.max() <= 1.0 + 1e-6
    assert mad < 0.02, mad
    assert iou >= min_iou, iou


def test_head_metadata_names_the_person_and_a_probability_output(trained, heads):
    from edge_deeplab.core.contract.semantics import labels, output_kind, read_model_metadata
    from edge_deeplab.core.contract.tflite_metadata import read_standard_metadata

    for variant, path in heads.items():
        meta = read_model_metadata(path)
        assert labels(meta) == ["person"] and output_kind(meta) == "probabilities", variant
        assert meta["head"]["class_index"] == PERSON and meta["head"]["stride"] == 4
        assert meta["config"]["labels"][PERSON] == "person" and meta["config"]["num_classes"] == 5
        std = read_standard_metadata(path.read_bytes())
        assert std.labels == ("person",) and std.activation == "none", (variant, std)
        assert std.output_kind == "probabilities"


def test_a_model_without_a_person_class_is_refused_before_conversion(trained, tmp_path, capsys):
    from edge_deeplab.app.cli import main

    out = tmp_path / "p.tflite"
    rc = main(["export", trained["run"], "--head", "person", "--labels", "background,cat,ball,box,cone",
               "--out", str(out)])
    assert_one_line_error(capsys.readouterr(), "person class", "background, cat", rc=rc, code=2)
    rc = main(["export", trained["run"], "--head", "person", "--output", "classmap", "--out", str(out)])
    assert_one_line_error(capsys.readouterr(), "--output classmap", rc=rc, code=2)
    assert not list(tmp_path.iterdir())


def test_eval_refuses_the_person_head_in_one_line(trained, heads, capsys):
    from edge_deeplab.app.cli import main

    rc = main(["eval", str(heads["float32"]), "--dataset", "folder", "--data-dir", trained["data"]])
    assert_one_line_error(capsys.readouterr(), "portrait-head export", "full-head", rc=rc, code=2)


def test_demo_runs_on_the_person_head_and_its_matte_matches_the_full_models(trained, heads, tmp_path):
    from edge_deeplab.app.cli import main

    src = tmp_path / "frames"
    src.mkdir()
    for i, im in enumerate(_held_out(trained, 8)):  # frames 4x the model input: the demo upsamples
        big = cv2.resize(im, (256, 256), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(src / f"f{i}.png"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    mattes = {}
    for name, model in (("head", heads["float32"]), ("full", trained["exports"]["float32"])):
        out = tmp_path / name
        assert main(["demo", "--model", str(model), "--source", str(src), "--headless",
                     "--effect", "mask", "--smoothing", "0", "--output", str(out)]) == 0
        files = sorted(out.iterdir())
        assert len(files) == 8
        mattes[name] = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
    assert mattes["head"].shape == (8, 256, 256)
    a, b = mattes["head"] > 127, mattes["full"] > 127
    assert a.mean() > 0.02
    assert _iou(a, b) >= 0.9, _iou(a, b)


@pytest.mark.gpu
def test_analyze_reports_the_person_head_wholly_on_the_gpu(heads, capsys):
    from edge_deeplab.app.cli import main

    for variant in ("float32", "int8"):
        assert main(["analyze", str(heads[variant]), "--json"]) == 0
        gpu = json.loads(capsys.readouterr().out)["gpu"]
        assert gpu["method"] == "litert-gpu" and gpu["fully_accelerated"] is True, (variant, gpu)
        assert gpu["unsupported_ops"] == []


@pytest.mark.mediapipe
def test_mediapipe_tasks_loads_the_person_head_with_its_label(trained, heads, mediapipe_python,
                                                              tmp_path):
    images = _held_out(trained, 4)
    paths = []
    for i, im in enumerate(images):
        paths.append(str(tmp_path / f"im{i}.npy"))
        np.save(paths[-1], im)
    for variant in ("float32", "int8"):
        proc = subprocess.run([mediapipe_python, str(HELPER), "--confidence", str(heads[variant]),
                               str(tmp_path / variant), *paths], capture_output=True, text=True,
                              timeout=600)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        assert lines, proc.stderr[-2000:]
        res = json.loads(lines[-1])
        assert res["ok"], res
        assert res["labels"] == ["person"], res
        ours, _ = _run(heads[variant], images)
        for mask_path, y in zip(res["masks"], ours):
            conf = np.load(mask_path)
            assert conf.shape == (64, 64)  # MediaPipe resized the 16x16 probability to the image
            up = cv2.resize(y[..., 0], (64, 64), interpolation=cv2.INTER_LINEAR)
            assert np.abs(conf - up).mean() < 0.05, (variant, np.abs(conf - up).mean())
