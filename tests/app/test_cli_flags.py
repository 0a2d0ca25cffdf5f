"""User-visible flags, through the real command (`edge_deeplab.app.cli.main` in-process, or the
`edge-deeplab` console script where a signal or a fresh process matters). Each test checks what
the flag promises (values, files, messages), not only the exit status.

One tiny run is trained once for the module (`train --epochs 1`), QAT'd (`qat`) and exported.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_deeplab import __version__
from edge_deeplab.app.cli import main
from tests.support.cli import assert_one_line_error, default_sigint

EXE = str(Path(sys.executable).parent / "edge-deeplab")
HEADS = ["--aspp-filters", "16", "--decoder-filters", "16", "--low-level-filters", "8"]


def _train_args(data, out, *extra):
    return ["train", "--dataset", "synthetic", "--data-dir", str(data), "--out", str(out),
            "--preset", "fast", "--batch-size", "4", "--checkpoint-every", "2", "--log-every", "1",
            *HEADS, *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from edge_deeplab.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("syn"), num_train=16, num_val=6, size=64)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """`train --epochs 1` on 16 images with batch 4, then `qat` with its flags."""
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(_train_args(data, run, "--epochs", "1")) == 0
    qat_json = run.parent / "qat.json"
    assert main(["qat", str(run), "--steps", "2", "--checkpoint-every", "1", "--lr", "1e-4",
                 "--calibration-batches", "1", "--batch-size", "2", "--no-eval", "--quiet",
                 "--json", str(qat_json)]) == 0
    return run


# ---------------------------------------------------------------------------------- top level
def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"edge-deeplab {__version__}"


@pytest.mark.parametrize("where", ["top", "sub"])
def test_debug_shows_the_traceback(where, tmp_path):
    missing = str(tmp_path / "nope.tflite")
    args = ["--debug", "analyze", missing] if where == "top" else ["analyze", missing, "--debug"]
    p = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    assert "Traceback (most recent call last)" in p.stderr and "EdgeDeeplabError" in p.stderr
    assert "not found" in p.stderr.strip().splitlines()[-1]
    plain = subprocess.run([EXE, "analyze", missing], capture_output=True, text=True, timeout=300)
    assert_one_line_error(plain)


def test_ctrl_c_exits_130(data, tmp_path):
    """A real SIGINT to a training process: exit 130 and one 'interrupted' line, no traceback."""
    out = tmp_path / "run"
    p = subprocess.Popen([EXE, *_train_args(data, out, "--steps", "100000", "--val-split", "none")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=default_sigint)
    try:
        from edge_deeplab.core._tf import tf

        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None:
            if (out / "checkpoints").is_dir() and tf.train.latest_checkpoint(str(out / "checkpoints")):
                break
            time.sleep(0.1)
        assert p.poll() is None, p.stderr.read()[-2000:]
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "edge-deeplab train: interrupted"
    assert "Traceback" not in err


# -------------------------------------------------------------------------------------- train
def test_train_epochs_sets_the_step_count(run):
    result = json.loads((run / "train_result.json").read_text())
    assert result["total_steps"] == result["final_step"] == 16 // 4  # 1 epoch of 16 images, batch 4
    assert [s for s, _ in result["loss_history"]] == [1, 2, 3, 4]


def test_train_classes_and_backbone_weights_from_a_local_h5(data, tmp_path):
    """--classes keeps only the named classes; --backbone-weights loads a MobileNetV2 .h5 saved
    here (offline) by layer name (lr 1e-9: the one step moves nothing measurable). One run, both."""
    from edge_deeplab.core._tf import keras
    from edge_deeplab.model.model_io import load_model

    keras.utils.set_random_seed(123)
    mnv2 = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, include_top=False,
                                          weights=None)
    h5 = tmp_path / "mnv2.h5"
    mnv2.save_weights(str(h5))
    out = tmp_path / "run"
    assert main(_train_args(data, out, "--steps", "1", "--lr", "1e-9", "--val-split", "none",
                            "--classes", "background,person", "--backbone-weights", str(h5))) == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["model"]["num_classes"] == 2 and saved["model"]["labels"] == ["background", "person"]
    assert saved["train"]["backbone_weights"] == str(h5)
    model, cfg, _ = load_model(out / "model.keras")
    assert model.output_shape[-1] == 2 and cfg.labels == ("background", "person")
    names = {l.name for l in model.layers}
    checked = [n for n in ("Conv1", "block_3_expand", "block_6_project") if n in names]
    assert checked
    for name in checked:
        np.testing.assert_allclose(model.get_layer(name).get_weights()[0],
                                   mnv2.get_layer(name).get_weights()[0], atol=1e-6)


def test_train_skip_bad(tmp_path, capsys):
    from tests.support.data_trees import make_folder_tree

    root, _ = make_folder_tree(tmp_path / "folder", np.random.default_rng(0), n=6, num_classes=3,
                               exts=(".png",), sizes=((64, 64),), split_files=False, labels=False)
    (root / "images" / "img005.png").write_bytes(b"not a png")
    args = ["train", "--dataset", "folder", "--data-dir", str(root), "--split", "all",
            "--val-split", "none", "--num-classes", "3", "--steps", "1", "--batch-size", "2",
            "--preset", "fast", *HEADS]
    rc = main([*args, "--out", str(tmp_path / "a")])
    assert_one_line_error(capsys.readouterr().err, "img005.png", rc=rc, code=2)
    assert main([*args, "--out", str(tmp_path / "b"), "--skip-bad"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(next(l for l in out.splitlines() if l.startswith("{")))
    assert summary["final_step"] == 1
    assert "skipped 1 bad item(s)" in err and "img005.png" in err, err


# ---------------------------------------------------------------------------------------- qat
def test_qat_cli_writes_the_qat_run(run):
    res = json.loads((run.parent / "qat.json").read_text())
    assert (run / "qat" / "model.h5").is_file() and (run / "qat" / "model.json").is_file()
    assert res["steps"] == res["final_step"] == 2 and res["start_step"] == 0
    assert res["lr"] == pytest.approx(1e-4) and res["batch_size"] == 2
    assert res["calibration_batches"] == 1 and res["freeze_bn"] is True and res["val_miou"] is None
    assert sorted(p.name for p in (run / "qat" / "checkpoints").glob("*.index"))[-1].endswith("-2.index")


# ------------------------------------------------------------------------------------- export
@pytest.fixture(scope="module")
def exports(run, data):
    d = run.parent / "exports"
    d.mkdir()
    paths = {}
    for name, extra in {
        "float32": [],
        "raw": ["--normalize-in-graph"],
        "classmap": ["--output", "classmap"],
        "int8_i8": ["--variant", "int8", "--io-type", "int8"],
        "int8_f32": ["--variant", "int8", "--io-type", "float32"],
        "qat": ["--variant", "qat-int8"],
    }.items():
        p = d / f"{name}.tflite"
        calib = ["--calibration-dataset", "synthetic", "--data-dir", str(data),
                 "--calibration-split", "train", "--calibration-steps", "4"] if "int8" in name else []
        assert main(["export", str(run), "--out", str(p), *extra, *calib]) == 0, name
        paths[name] = p
    return paths


def _io(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return it.get_input_details()[0], it.get_output_details()[0]


def _invoke(path, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(i["index"], x.astype(i["dtype"]))
    it.invoke()
    return it.get_tensor(o["index"])[0]


def test_export_flags_change_the_graph_as_promised(exports):
    img = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3)).astype(np.float32)
    logits = _invoke(exports["float32"], img / 127.5 - 1.0)
    # --normalize-in-graph: raw 0..255 pixels in, the same logits out.
    np.testing.assert_allclose(_invoke(exports["raw"], img), logits, atol=1e-4 * np.ptp(logits))
    # --output classmap: int32 (1, H, W), the argmax of the logits.
    i, o = _io(exports["classmap"])
    assert o["dtype"] == np.int32 and list(o["shape"]) == [1, 64, 64]
    assert (_invoke(exports["classmap"], img / 127.5 - 1.0) == logits.argmax(-1)).mean() > 0.999
    # PTQ with int8 or float32 I/O, calibrated through --calibration-*.
    for name, dtype in (("int8_i8", np.int8), ("int8_f32", np.float32)):
        i, o = _io(exports[name])
        assert i["dtype"] == dtype and o["dtype"] == dtype, name
    meta = json.loads(exports["int8_i8"].with_suffix(".json").read_text())
    # the flags reached the calibration: the dataset, its split and the step count as given
    assert meta["export"]["calibration"] == {"source": "dataset:synthetic", "split": "train", "steps": 4}


def test_qat_int8_export_from_a_run_dir(exports):
    from converters.analyze import analyze_tflite

    a = analyze_tflite(str(exports["qat"]), gpu=False)
    assert a["inputs"][0]["dtype"] == "uint8"
    assert not a["float_islands"], a["float_islands"]
    assert a["ops"].get("CONV_2D", 0) > 10


# -------------------------------------------------------------------------------------- bench
def test_bench_missing_delegate_is_one_line(exports, tmp_path, capsys):
    rc = main(["bench", str(exports["float32"]), "--delegate", str(tmp_path / "libnope.so"),
               "--runs", "2", "--warmup", "1", "--rounds", "1", "--e2e-runs", "0", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and err and all("libnope.so" in l for l in err if "error" in l)
    assert len([l for l in err if "libnope.so" in l]) == 1


def test_bench_runtime_frame_plot_and_timeout(exports, tmp_path, capsys):
    import cv2

    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), np.full((90, 160, 3), 128, np.uint8))
    js, png = tmp_path / "b.json", tmp_path / "b.png"
    rc = main(["bench", str(exports["float32"]), "--runtime", "interpreter", "--frame", str(frame),
               "--plot", str(png), "--json", str(js), "--runs", "3", "--warmup", "1", "--rounds", "1",
               "--e2e-runs", "2", "--quiet"])
    assert rc == 0
    row = json.loads(js.read_text())["results"][0]
    assert "interpreter" in row["runtime"].lower(), row["runtime"]
    assert row["e2e_ms"]["frame"] == [90, 160] and row["e2e_ms"]["n"] == 2
    assert row["normalization"]["source"] == "metadata"
    assert cv2.imread(str(png)) is not None
    # --mean/--std apply to a model without normalization metadata.
    from edge_deeplab.core._tf import keras, tf

    inp = keras.Input((32, 32, 3))
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(tf.lite.TFLiteConverter.from_keras_model(
        keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))).convert())
    for flags, want in (([], "default"), (["--mean", "10,20,30", "--std", "2"], "flags")):
        assert main(["bench", str(bare), "--json", str(js), "--runs", "2", "--warmup", "1",
                     "--rounds", "1", "--e2e-runs", "0", "--quiet", *flags]) == 0
        norm = json.loads(js.read_text())["results"][0]["normalization"]
        assert norm["source"] == want
        if want == "flags":
            assert norm["mean"] == [10.0, 20.0, 30.0] and norm["std"] == [2.0, 2.0, 2.0]
    capsys.readouterr()
    rc = main(["bench", str(exports["float32"]), "--timeout", "0.01", "--runs", "2", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "timed out" in err


# --------------------------------------------------------------------------------------- eval
def test_eval_qat_scores_the_qat_keras_model(run, data, exports, tmp_path, capsys):
    j, jt = tmp_path / "q.json", tmp_path / "t.json"
    base = ["--dataset", "synthetic", "--data-dir", str(data), "--quiet"]
    assert main(["eval", str(run), "--qat", "--json", str(j), *base]) == 0
    assert main(["eval", str(exports["qat"]), "--json", str(jt), *base]) == 0
    q, t = json.loads(j.read_text()), json.loads(jt.read_text())
    assert q["model"].endswith("qat/model.h5") and q["num_images"] == t["num_images"] == 6
    assert q["miou"] == pytest.approx(t["miou"], abs=0.03)  # Keras QAT vs its int8 export


COLOURS = {0: (20, 20, 20), 1: (200, 30, 30), 2: (30, 30, 200)}  # background, person, sky (RGB)


def _colour_rectangles(rng, h, w, num_classes, n_rects=3):
    mask = np.zeros((h, w), np.uint8)
    for _ in range(n_rects):
        y, x = rng.integers(0, h - 16), rng.integers(0, w - 16)
        rh, rw = rng.integers(10, 28, 2)
        mask[y:y + rh, x:x + rw] = rng.integers(1, num_classes)
    return mask


@pytest.fixture(scope="module")
def colour(tmp_path_factory, pytestconfig):
    """A DeepLab whose classes follow the colours (tests.support.segmentation_models), exported to
    float32 with metadata, and a 3-class folder dataset of coloured rectangles it segments well."""
    from tests.support.data_trees import make_folder_tree
    from tests.support.segmentation_models import colour_rule
    from tests.support.tiny import tiny_tflite

    root, masks = make_folder_tree(tmp_path_factory.mktemp("colour") / "data", np.random.default_rng(3),
                                   n=6, num_classes=3, exts=(".png",), sizes=((64, 64),),
                                   split_files=False, labels=False, scene=_colour_rectangles,
                                   colours=COLOURS, noise=0)
    frames = [np.asarray(_png(root / "images" / f"{stem}.png")) for stem in sorted(masks)]
    for img, stem in zip(frames, sorted(masks)):
        assert (colour_rule(img) == masks[stem]).mean() > 0.99
    return tiny_tflite(pytestconfig, weights="colour"), root, frames


def test_eval_multiscale_flip_crf_on_tflite(colour, tmp_path):
    """On a confident, per-pixel (colour-decided) model: a coarse scale alone blurs the rectangle
    edges (predictions change, mIoU drops a little); flipping changes nothing (the model is
    flip-equivariant); scales 0.5-1.5 + flip + CRF together keep the single-scale mIoU."""
    path, root, _ = colour
    base = ["eval", str(path), "--dataset", "folder", "--data-dir", str(root), "--num-classes", "3",
            "--quiet"]
    runs = {"single": [], "coarse": ["--scales", "0.5"], "flip": ["--flip"],
            "all": ["--scales", "0.5,1.0,1.5", "--flip", "--crf", "--crf-backend", "builtin"]}
    res, preds = {}, {}
    for name, extra in runs.items():
        j, d = tmp_path / f"{name}.json", tmp_path / name
        assert main([*base, *extra, "--json", str(j), "--save-predictions", str(d)]) == 0
        res[name] = json.loads(j.read_text())
        preds[name] = np.stack([np.asarray(_png(p)) for p in sorted(d.glob("*.png"))])
        assert res[name]["num_images"] == 6 and len(preds[name]) == 6
    miou = {k: r["miou"] for k, r in res.items()}
    assert miou["single"] > 0.9, miou
    assert (preds["coarse"] != preds["single"]).mean() > 0.001
    assert miou["single"] - 0.15 < miou["coarse"] < miou["single"] + 0.005, miou
    assert (preds["flip"] == preds["single"]).mean() > 0.999
    assert miou["all"] >= miou["single"] - 0.03, miou


def _png(p):
    from PIL import Image

    return Image.open(p)


# --------------------------------------------------------------------------------------- demo
def _person_prob(path, rgb, channel):
    """The demo's matte, computed here: softmax of the channel, levels 0.1..0.9 stretched to 0..1."""
    logits = _invoke(path, rgb[None].astype(np.float32) / 127.5 - 1.0).astype(np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    p = (e / e.sum(-1, keepdims=True))[..., channel]
    return np.clip((p - 0.1) / 0.8, 0, 1)


def _demo_image(model, rgb, out, *extra):
    import cv2

    src = out.with_name(out.stem + "_in.png")
    cv2.imwrite(str(src), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert main(["demo", "--model", str(model), "--source", str(src), "--headless", "--output", str(out),
                 "--effect", "mask", "--no-overlay", *extra]) == 0
    return cv2.imread(str(out), cv2.IMREAD_GRAYSCALE).astype(np.float64) / 255.0


def test_demo_person_class_and_refine(colour, tmp_path, capsys):
    m, _, frames = colour
    rgb = frames[0]
    default = _demo_image(m, rgb, tmp_path / "d.png", "--refine", "none")
    got = {c: _demo_image(m, rgb, tmp_path / f"c{c}.png", "--person-class", str(c), "--refine", "none")
           for c in (1, 2)}
    for c, matte in got.items():  # the matte of the chosen channel
        want = _person_prob(m, rgb, c)
        assert matte.shape == want.shape and np.abs(matte - want).max() <= 2 / 255, c
    np.testing.assert_array_equal(default, got[1])  # the labels say class 1 is "person"
    assert np.abs(got[1] - got[2]).mean() > 0.1  # person (red) and sky (blue) differ
    guided = _demo_image(m, rgb, tmp_path / "g.png", "--refine", "guided")
    d = np.abs(guided - got[1])
    assert d.max() > 0.05 and d.mean() < 0.1  # edges refined, the matte kept
    capsys.readouterr()
    rc = main(["demo", "--model", str(m), "--source", str(tmp_path / "c1_in.png"), "--headless",
               "--output", str(tmp_path / "x.png"), "--person-class", "7"])
    assert_one_line_error(capsys.readouterr().err, "7", rc=rc)


def test_demo_smoothing_carries_the_matte_across_frames(colour, tmp_path):
    """Video A, A, B, B: without smoothing the last frame's matte is B's; with momentum 0.9 and a
    plain EMA it is still mostly A's (0.81 A + 0.19 B); the default, motion-aware EMA sees that the
    image changed and follows B as promptly as no smoothing does."""
    import cv2

    m, _, frames = colour
    a, b = frames[0], frames[1]
    pa, pb = _person_prob(m, a, 1), _person_prob(m, b, 1)
    assert np.abs(pa - pb).mean() > 0.05
    src = tmp_path / "ab.avi"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 64))
    for f in (a, a, b, b):
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()

    def last_matte(smoothing, *extra):
        out = tmp_path / f"s{smoothing}{len(extra)}.mp4"
        assert main(["demo", "--model", str(m), "--source", str(src), "--headless", "--output", str(out),
                     "--effect", "mask", "--no-overlay", "--refine", "none",
                     "--smoothing", str(smoothing), *extra]) == 0
        cap = cv2.VideoCapture(str(out))
        got = []
        ok, f = cap.read()
        while ok:
            got.append(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float64) / 255.0)
            ok, f = cap.read()
        assert len(got) == 4
        return got[-1]

    def d(x, y):
        return np.abs(x - y).mean()

    m0, m9, aware = last_matte(0), last_matte(0.9, "--plain-ema"), last_matte(0.9)
    assert d(m0, pb) < d(m0, pa) / 3
    assert d(m9, pa) < d(m9, pb)
    assert d(aware, pb) < d(aware, pa) / 3


@pytest.mark.gpu
def test_demo_on_the_gpu_accelerator_matches_cpu(colour, tmp_path):
    m, _, frames = colour
    cpu = _demo_image(m, frames[0], tmp_path / "cpu.png", "--refine", "none")
    gpu = _demo_image(m, frames[0], tmp_path / "gpu.png", "--refine", "none", "--accelerator", "gpu")
    assert np.abs(gpu - cpu).max() <= 3 / 255  # same matte within GPU float rounding
