"""Evaluation: predictions folders via the CLI, letterbox/tiling geometry, CRF, Keras vs TFLite."""

import json
from pathlib import Path

import numpy as np
import pytest

from edge_deeplab.app.cli import main as cli_main
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.data import load_dataset
from edge_deeplab.evaluation.crf import dense_crf
from edge_deeplab.evaluation.evaluate import evaluate_predictions, evaluate_predictor
from edge_deeplab.evaluation.predictors import Predictor
from edge_deeplab.evaluation.tiling import predict_images
from edge_deeplab.metrics import ConfusionMatrix
from tests.support.cli import assert_one_line_error
from tests.support.data_trees import (
    image_for,
    make_folder_tree,
    make_voc_tree,
    naive_miou,
    noisy_prediction,
    per_image_mean_miou,
    save_gray_png,
    save_palette_png,
)


def _write_predictions(pred_dir, masks, stems, k, rng, palette_every=2):
    pred_dir.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i, s in enumerate(stems):
        p = noisy_prediction(rng, masks[s], k, flip_frac=0.05 + 0.3 * (i % 2))
        (save_palette_png if i % palette_every == 0 else save_gray_png)(pred_dir / f"{s}.png", p)
        pairs.append((p, masks[s]))
    return pairs


def test_cli_predictions_folder_matches_reference(tmp_path, capsys):
    rng = np.random.default_rng(1)
    root, masks = make_folder_tree(tmp_path / "data", rng, n=8, num_classes=4)
    stems = [s for s in sorted(masks)][4:]  # val split = second half
    pairs = _write_predictions(tmp_path / "pred", masks, stems, 4, rng)
    out = tmp_path / "r.json"
    rc = cli_main(["eval", "--predictions", str(tmp_path / "pred"), "--dataset", "folder",
                   "--data-dir", str(root), "--split", "val", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    ref_miou, ref_per_class, ref_acc = naive_miou(pairs, 4)
    assert r["miou"] == pytest.approx(ref_miou, abs=1e-12)
    assert r["pixel_accuracy"] == pytest.approx(ref_acc, abs=1e-12)
    assert r["per_class_iou"] == pytest.approx(ref_per_class, abs=1e-12)
    assert r["num_images"] == 4 and r["dataset"] == "folder" and r["split"] == "val"
    assert "model" in r
    stdout = capsys.readouterr().out
    assert "thing1" in stdout and f"mIoU {ref_miou * 100:.2f}%" in stdout


def test_voc_layout_predictions_match_reference_not_per_image_mean(tmp_path):
    rng = np.random.default_rng(2)
    voc, masks = make_voc_tree(tmp_path, rng, n_train=2, n_val=5)
    ds = load_dataset("voc", tmp_path, "val")
    pairs = _write_predictions(tmp_path / "pred", masks, ds.stems, 21, rng)
    r = evaluate_predictions(tmp_path / "pred", ds)
    ref = naive_miou(pairs, 21)[0]
    assert r["miou"] == pytest.approx(ref, abs=1e-12)
    assert abs(per_image_mean_miou(pairs, 21) - r["miou"]) > 1e-3
    assert r["num_pixels"] == sum(int((m != 255).sum()) for _, m in pairs)


def test_cli_predictions_errors(tmp_path, capsys):
    rng = np.random.default_rng(3)
    root, masks = make_folder_tree(tmp_path / "data", rng, n=4)
    stems = sorted(masks)[2:]
    _write_predictions(tmp_path / "pred", masks, stems, 4, rng)
    (tmp_path / "pred" / f"{stems[1]}.png").unlink()
    rc = cli_main(["eval", "--predictions", str(tmp_path / "pred"), "--dataset", "folder",
                   "--data-dir", str(root), "--split", "val"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("edge-deeplab eval: error: 1 of 2 images have no prediction")
    # A prediction at the wrong size is an error unless resizing is asked for.
    save_gray_png(tmp_path / "pred" / f"{stems[1]}.png", np.zeros((5, 5), np.uint8))
    ds = load_dataset("folder", root, "val")
    with pytest.raises(EdgeDeeplabError, match="--resize-predictions"):
        evaluate_predictions(tmp_path / "pred", ds)
    assert evaluate_predictions(tmp_path / "pred", ds, resize=True)["num_images"] == 2
    rc = cli_main(["eval", "--dataset", "folder", "--data-dir", str(root)])
    assert rc == 2 and "give a MODEL" in capsys.readouterr().err


def test_binary_predictions(tmp_path):
    root = tmp_path / "b"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (tmp_path / "pred").mkdir()
    gt = np.zeros((10, 12), np.uint8)
    gt[2:8, 3:9] = 255
    pred = np.zeros_like(gt)
    pred[2:8, 3:6] = 255
    save_gray_png(root / "images" / "a.png", np.zeros((10, 12), np.uint8))
    save_gray_png(root / "masks" / "a.png", gt)
    save_gray_png(tmp_path / "pred" / "a.png", pred)
    r = evaluate_predictions(tmp_path / "pred", load_dataset("folder", root, binary=True))
    # fg: TP 18, FN 18 -> 0.5; bg: TP 84, FP 18 -> 84/102
    assert r["per_class_iou"] == pytest.approx([84 / 102, 0.5])


# -- geometry: letterbox, tiles, scales, flips -------------------------------------------------


class RedThreshold(Predictor):
    """A tiny pure-numpy 'model': class 1 where the (normalized) red channel is positive.

    Its output depends only on each pixel, so any misalignment in letterboxing, tiling, flipping
    or resizing back shows up as lost IoU.
    """

    def __init__(self, input_hw=(32, 48), asymmetric=False):
        self.input_hw = input_hw
        self.num_classes = 2
        self.batch_size = 3
        self.asymmetric = asymmetric
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        r = x[..., 0:1]
        return np.concatenate([-8 * r, 8 * r], axis=-1).astype(np.float32)


RED_COLOURS = {0: (0, 0, 200), 1: (255, 0, 200)}  # background blue, objects red + blue


def _red_mask(rng, h, w, num_classes=2):
    gt = np.zeros((h, w), np.uint8)
    for _ in range(4):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        y1, x1 = y0 + rng.integers(6, h // 2), x0 + rng.integers(6, w // 2)
        gt[y0:y1, x0:x1] = 1
    return gt


def _red_scene(rng, h, w):
    gt = _red_mask(rng, h, w)
    return image_for(gt, rng, RED_COLOURS, noise=0), gt


@pytest.mark.parametrize("scales,flip", [((1.0,), False), ((0.5, 1.0, 1.75), True), ((2.5,), False)])
def test_letterbox_tiling_multiscale_alignment(scales, flip):
    rng = np.random.default_rng(4)
    pred = RedThreshold()
    scenes = [_red_scene(rng, 61, 37), _red_scene(rng, 40, 90), _red_scene(rng, 48, 48)]
    outs = predict_images(pred, [im for im, _ in scenes], scales=scales, flip=flip)
    cm = ConfusionMatrix(2)
    for (probs, p), (im, gt) in zip(outs, scenes):
        assert p.shape == gt.shape and probs.shape == gt.shape + (2,)
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
        cm.update(p, gt)
    assert cm.result()["miou"] > 0.93


def test_tiles_cover_large_scales():
    rng = np.random.default_rng(5)
    img, gt = _red_scene(rng, 64, 64)
    pred = RedThreshold(input_hw=(32, 32))
    predict_images(pred, [img], scales=(1.0,))
    one = pred.calls
    pred.calls = 0
    predict_images(pred, [img], scales=(2.0,), flip=True)
    assert pred.calls > one  # 2x the fitted size needs several tiles (x2 for flips)


def test_evaluate_predictor_loop_and_class_check(tmp_path):
    root, _ = make_folder_tree(tmp_path / "red", np.random.default_rng(6), n=5, num_classes=2,
                               exts=(".png",), sizes=[(50 + 7 * i, 70 - 5 * i) for i in range(5)],
                               split_files=False, labels=False, scene=_red_mask,
                               colours=RED_COLOURS, noise=0)
    ds = load_dataset("folder", root, num_classes=2)
    r = evaluate_predictor(RedThreshold(), ds, scales=(0.75, 1.0), flip=True,
                           save_dir=tmp_path / "pred")
    assert r["miou"] > 0.93 and r["num_images"] == 5 and r["scales"] == [0.75, 1.0]
    # The saved predictions score the same through the predictions path.
    r2 = evaluate_predictions(tmp_path / "pred", ds)
    assert r2["miou"] == pytest.approx(r["miou"], abs=1e-12)
    with pytest.raises(EdgeDeeplabError, match="predicts 2 classes"):
        evaluate_predictor(RedThreshold(), load_dataset("folder", root, num_classes=3))


def test_dense_crf_cleans_noisy_probabilities():
    rng = np.random.default_rng(7)
    img, gt = _red_scene(rng, 48, 64)
    probs = np.stack([1.0 - gt, gt.astype(float)], -1) * 0.3 + 0.35
    probs = probs + rng.normal(0, 0.25, probs.shape)  # heavy per-pixel noise
    probs = np.clip(probs, 0.01, None)
    probs = (probs / probs.sum(-1, keepdims=True)).astype(np.float32)

    def miou(p):
        cm = ConfusionMatrix(2)
        cm.update(p.argmax(-1), gt)
        return cm.result()["miou"]

    before = miou(probs)
    refined = dense_crf(img, probs, backend="builtin")
    assert refined.shape == probs.shape
    np.testing.assert_allclose(refined.sum(-1), 1.0, atol=1e-4)
    assert miou(refined) > before + 0.05
    with pytest.raises(EdgeDeeplabError):
        dense_crf(img[:10], probs)


# -- real models: Keras vs exported TFLite through the same code --------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, pytestconfig):
    """The tiny DeepLab with calibrated random weights (predictions vary across the image), saved
    as a run dir, and its float32 export (the real exporter): ``(run dir, .tflite, model, config)``."""
    from edge_deeplab.model.model_io import save_model
    from tests.support.tiny import tiny_model, tiny_tflite

    run = tmp_path_factory.mktemp("models") / "run"
    model, cfg = tiny_model(weights="calibrated")
    save_model(model, run / "model.keras", cfg)
    return run, tiny_tflite(pytestconfig, weights="calibrated"), model, cfg


def test_keras_and_tflite_agree_through_same_code(tmp_path, tiny_models, capsys):
    run, tflite, _, _ = tiny_models
    rng = np.random.default_rng(8)
    root, _ = make_folder_tree(tmp_path / "data", rng, n=6, num_classes=3,
                               sizes=((50, 70), (64, 40), (33, 33)))
    outs = {}
    for name, target in (("keras", run), ("tflite", tflite)):
        out = tmp_path / f"{name}.json"
        rc = cli_main(["eval", str(target), "--dataset", "folder", "--data-dir", str(root),
                       "--split", "val", "--json", str(out), "--quiet"])
        assert rc == 0, capsys.readouterr().err
        outs[name] = json.loads(out.read_text())
    k, t = outs["keras"], outs["tflite"]
    assert k["num_images"] == t["num_images"] == 3
    assert k["format"] == "keras" and t["format"] == "tflite"
    assert abs(k["miou"] - t["miou"]) < 0.01
    a, b = np.array(k["confusion_matrix"]), np.array(t["confusion_matrix"])
    assert np.abs(a - b).sum() / a.sum() < 0.02  # at most 1% of pixels flip class


def test_keras_multiscale_flip_crf_keep_a_trained_models_accuracy(trained):
    """Multi-scale + flip + CRF on the suite's trained model improve it, as DeepLab's evaluation
    recipe promises (measured on 12 held-out images: single scale 0.6985, scales 0.5/1/1.75 +
    flip + CRF 0.7732)."""
    from edge_deeplab.evaluation.evaluate import evaluate_keras
    from edge_deeplab.model.model_io import load_model

    trained_model = load_model(trained["keras"])[0]
    ds = load_dataset("folder", trained["data"], "val").subset(12)
    single = evaluate_keras(trained_model, ds, batch_size=4)
    r = evaluate_keras(trained_model, ds, scales=(0.5, 1.0, 1.75), flip=True, crf=True,
                       batch_size=4)
    print(f"single scale {single['miou']:.4f}, scales+flip+CRF {r['miou']:.4f}")
    assert r["num_images"] == single["num_images"] == 12 and r["flip"] and r["crf"]
    assert single["miou"] > 0.5
    assert r["miou"] >= single["miou"] + 0.02


def test_keras_eval_refuses_a_class_count_mismatch(tmp_path, tiny_models):
    from edge_deeplab.evaluation.evaluate import evaluate_keras

    _, _, model, _ = tiny_models
    root, _ = make_folder_tree(tmp_path / "data", np.random.default_rng(9), n=2, num_classes=3,
                               split_files=False)
    (root / "labels.txt").unlink()
    with pytest.raises(EdgeDeeplabError, match="predicts 3 classes"):
        evaluate_keras(model, load_dataset("folder", root, num_classes=4))


def test_eval_rejects_garbage_tflite(tmp_path, capsys):
    rng = np.random.default_rng(10)
    root, _ = make_folder_tree(tmp_path / "data", rng, n=2)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    rc = cli_main(["eval", str(bad), "--dataset", "folder", "--data-dir", str(root), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("edge-deeplab eval: error:") and "bad.tflite" in err[-1]


@pytest.mark.slow
def test_int8_and_classmap_exports_score_like_keras(tmp_path, tiny_models, pytestconfig):
    import cv2

    from converters.export import export_tflite
    from edge_deeplab.evaluation.evaluate import evaluate_keras, evaluate_tflite
    from tests.support.tiny import tiny_tflite

    _, _, model, cfg = tiny_models
    rng = np.random.default_rng(12)
    root, _ = make_folder_tree(tmp_path / "data", rng, n=4, num_classes=3, split_files=False)
    ds = load_dataset("folder", root)
    ref = evaluate_keras(model, ds)
    cm = evaluate_tflite(tiny_tflite(pytestconfig, weights="calibrated",
                                     options={"output": "classmap"}), ds)
    assert abs(cm["miou"] - ref["miou"]) < 0.02
    raw = evaluate_tflite(tiny_tflite(pytestconfig, weights="calibrated",
                                      options={"normalize_in_graph": True}), ds)
    assert abs(raw["miou"] - ref["miou"]) < 0.02  # takes 0..255 pixels (from its metadata)
    # int8 calibrated on the very images it is scored on (this dataset: not a cacheable option)
    reps = [ds.read(i)[0] for i in range(len(ds))]
    export_tflite(model, tmp_path / "q.tflite", "int8", config=cfg, io_type="uint8",
                  representative=[cv2.resize(r, (64, 64)) for r in reps] * 4)
    q = evaluate_tflite(tmp_path / "q.tflite", ds)
    assert q["input_dtype"] == "uint8" and q["num_images"] == 4
    # An int8 confusion matrix is exactly the one NumPy builds from the LiteRT Interpreter's argmax
    # on the raw pixels (64x64 PNGs: no resizing; ignore pixels left out). On the colour-decided
    # model (wide logit margins): a random net's near-ties flip between Interpreter and
    # CompiledModel kernels (26 of 16384 pixels of the export above).
    from tests.support.segmentation_models import LABELS

    decided = tiny_tflite(pytestconfig, "int8", weights="colour")
    root64, masks = make_folder_tree(tmp_path / "data64", rng, n=4, num_classes=len(LABELS),
                                     exts=(".png",), sizes=((64, 64),), split_files=False)
    got = np.array(evaluate_tflite(decided, load_dataset("folder", root64))["confusion_matrix"])
    want = numpy_confusion(decided, root64, masks, len(LABELS))
    print(f"int8 confusion matrix (NumPy reference):\n{want}")
    assert (np.diag(want) > 0).sum() >= 2 and np.array_equal(got, want)


def test_int8_eval_miou_and_the_runners_masks_agree_exactly(tmp_path, pytestconfig, capsys):
    """One image-to-input path: ``eval`` (CLI) on non-square images scores exactly the masks the
    runner predicts for them (``Runner.segment``), and saves exactly those masks."""
    from PIL import Image

    from edge_deeplab.runtime import open_runner
    from tests.support.segmentation_models import LABELS
    from tests.support.tiny import tiny_tflite

    model = tiny_tflite(pytestconfig, "int8", weights="colour", options={"io_type": "uint8"})
    k = len(LABELS)
    root, masks = make_folder_tree(tmp_path / "data", np.random.default_rng(21), n=4, num_classes=k,
                                   exts=(".png",), sizes=((50, 90), (80, 36), (33, 47)),
                                   split_files=False)
    out = tmp_path / "eval.json"
    rc = cli_main(["eval", str(model), "--dataset", "folder", "--data-dir", str(root), "--json", str(out),
                   "--save-predictions", str(tmp_path / "pred"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    r = json.loads(out.read_text())
    assert r["input_dtype"] == "uint8"
    want = np.zeros((k, k), np.int64)
    with open_runner(model) as runner:
        for stem, gt in masks.items():
            img = np.asarray(Image.open(root / "images" / f"{stem}.png").convert("RGB"), np.uint8)
            pred = runner.segment(img).astype(np.int64)
            assert pred.shape == gt.shape
            saved = np.asarray(Image.open(tmp_path / "pred" / f"{stem}.png"))
            assert np.array_equal(saved, pred)  # the predicted masks eval wrote
            keep = gt != 255
            want += np.bincount(gt[keep].astype(np.int64) * k + pred[keep],
                                minlength=k * k).reshape(k, k)
    got = np.array(r["confusion_matrix"])
    assert (np.diag(want) > 0).sum() >= 2 and np.array_equal(got, want)
    union = want.sum(0) + want.sum(1) - np.diag(want)
    assert r["miou"] == pytest.approx(float(np.mean([want[c, c] / union[c] for c in range(k) if union[c]])))


def numpy_confusion(model, root, masks: dict, k: int) -> np.ndarray:
    """``k x k`` confusion matrix (rows ground truth) of a uint8-input model fed raw pixels."""
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    it = Interpreter(model_path=str(model))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    cm = np.zeros((k, k), np.int64)
    for stem, gt in masks.items():
        img = np.asarray(Image.open(Path(root) / "images" / f"{stem}.png").convert("RGB"), np.uint8)
        it.set_tensor(i["index"], img[None])
        it.invoke()
        pred = it.get_tensor(o["index"])[0].argmax(-1).astype(np.int64)
        keep = gt != 255
        cm += np.bincount(gt[keep].astype(np.int64) * k + pred[keep], minlength=k * k).reshape(k, k)
    return cm


@pytest.mark.gpu
def test_tflite_gpu_accelerator_matches_cpu(tmp_path, tiny_models):
    """GPU eval through the CLI (the runtime isolates the GPU in a TF-free child); a crash fails."""
    import subprocess
    import sys

    _, tflite, _, _ = tiny_models
    rng = np.random.default_rng(11)
    root, _ = make_folder_tree(tmp_path / "data", rng, n=2, num_classes=3, split_files=False)
    outs = {}
    for acc in ("cpu", "gpu"):
        out = tmp_path / f"{acc}.json"
        proc = subprocess.run([sys.executable, "-m", "edge_deeplab.app.cli", "eval", str(tflite),
                               "--dataset", "folder", "--data-dir", str(root), "--accelerator", acc,
                               "--json", str(out), "--quiet"], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[acc] = json.loads(out.read_text())
    assert outs["gpu"]["accelerator"] == "gpu"
    assert abs(outs["cpu"]["miou"] - outs["gpu"]["miou"]) < 0.02


def test_metric_agrees_with_keras_mean_iou():
    """A second independent reference: tf_keras' MeanIoU over the same pixels (255 masked out)."""
    from edge_deeplab.core._tf import keras

    rng = np.random.default_rng(13)
    cm = ConfusionMatrix(6)
    ref = keras.metrics.MeanIoU(num_classes=6)
    for i in range(4):
        gt = rng.integers(0, 6, (17, 23)).astype(np.uint8)
        gt[rng.random(gt.shape) < 0.1] = 255
        gt[gt == 5] = 0  # class 5 is absent from the ground truth ...
        pred = noisy_prediction(rng, gt, 5, flip_frac=0.3)  # ... and from the predictions
        cm.update(pred, gt)
        keep = gt != 255
        ref.update_state(gt[keep], pred[keep])
    assert cm.result()["per_class_iou"][5] is None
    assert cm.result()["miou"] == pytest.approx(float(ref.result().numpy()), abs=1e-6)


# ------------------------------------------ issue 12: prediction ids outside the class range
def test_cli_out_of_range_prediction_ids_are_an_error_unless_allowed(tmp_path, capsys):
    rng = np.random.default_rng(5)
    root, masks = make_folder_tree(tmp_path / "data", rng, n=6, num_classes=4)
    stems = sorted(masks)[3:]
    _write_predictions(tmp_path / "pred", masks, stems, 4, rng)
    bad = np.array(masks[stems[1]], np.uint8)
    bad[bad == 255] = 0
    bad[:2, :3] = 7  # a class id the 4-class set does not have
    save_gray_png(tmp_path / "pred" / f"{stems[1]}.png", bad)
    n_bad = int(((bad == 7) & (masks[stems[1]] != 255)).sum())
    args = ["eval", "--predictions", str(tmp_path / "pred"), "--dataset", "folder",
            "--data-dir", str(root), "--split", "val", "--json", str(tmp_path / "r.json")]
    rc = cli_main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("edge-deeplab eval: error:"), err
    assert f"{n_bad} predicted pixels in 1 of 3 images" in err[-1] and f"{stems[1]}.png" in err[-1]
    assert "--allow-invalid-predictions" in err[-1] and not (tmp_path / "r.json").exists()

    rc = cli_main(args + ["--allow-invalid-predictions"])
    out = capsys.readouterr().out
    assert rc == 0 and f"{n_bad} predicted pixels in 1 of 3 images" in out
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["invalid_predictions"] == n_bad and r["invalid_prediction_files"] == 1


def test_cli_eval_json_into_a_read_only_folder_fails_before_scoring(tmp_path, monkeypatch, capsys):
    import os
    from pathlib import Path

    import edge_deeplab.evaluation.evaluate as ev

    def no_scoring(*a, **k):
        raise AssertionError("scored before checking --json")

    monkeypatch.setattr(ev, "evaluate_predictions", no_scoring)
    rng = np.random.default_rng(6)
    root, masks = make_folder_tree(tmp_path / "data", rng, n=4, num_classes=4)
    _write_predictions(tmp_path / "pred", masks, sorted(masks)[2:], 4, rng)
    if os.geteuid() == 0:
        ro = Path("/sys")  # root ignores mode bits; sysfs refuses new files
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
    rc = cli_main(["eval", "--predictions", str(tmp_path / "pred"), "--dataset", "folder",
                   "--data-dir", str(root), "--split", "val", "--json", str(ro / "r.json")])
    assert_one_line_error(capsys.readouterr().err, "--json", "not writable", rc=rc, code=2)
