"""Issue 20: no command destroys an input, a finished result or a dataset; outputs are refused in
one line (exit 2) before any work; eval's --save-predictions folder is swapped in only when done.

Every case runs the real CLI. Models are the suite's cached tiny export (tests.support.tiny); the
data are small folder datasets made here (tests.support.data_trees).
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_deeplab.app.cli import main
from tests.support.cli import assert_one_line_error, default_sigint
from tests.support.data_trees import make_folder_tree, save_gray_png


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _tree(root) -> dict:
    """``{relative path: sha256}`` of every file under ``root`` (what "unchanged" means)."""
    root = Path(root)
    return {str(p.relative_to(root)): _digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def model(pytestconfig, tmp_path_factory):
    """The tiny float32 export (3 classes, 64x64) and its sidecar, copied into a folder of its own."""
    from tests.support.tiny import tiny_tflite

    src = tiny_tflite(pytestconfig)
    d = tmp_path_factory.mktemp("model")
    shutil.copy(src, d / "m.tflite")
    shutil.copy(src.with_suffix(".json"), d / "m.json")
    return d / "m.tflite"


@pytest.fixture()
def data(tmp_path):
    root, _ = make_folder_tree(tmp_path / "ds", np.random.default_rng(0), n=6, num_classes=3)
    return root


def _eval(model, data, *extra):
    return main(["eval", str(model), "--dataset", "folder", "--data-dir", str(data),
                 "--split", "val", "--quiet", *extra])


# ------------------------------------------------------------------ case 1: an output is an input
def test_an_output_that_is_an_input_or_its_sidecar_is_refused_and_left_alone(model, data, tmp_path,
                                                                             capsys):
    before = _tree(model.parent)
    # the model itself (wrong suffix for JSON), its sidecar, and the sidecar through a symlink
    link = tmp_path / "report.json"
    link.symlink_to(model.with_suffix(".json"))
    for out, needle in ((model, "must end in .json"), (model.with_suffix(".json"), "is the model's sidecar"),
                        (link, "is the model's sidecar")):
        rc = _eval(model, data, "--json", str(out))
        assert_one_line_error(capsys.readouterr().err, "--json", needle, rc=rc, code=2)
        rc = main(["bench", str(model), "--json", str(out)])
        assert_one_line_error(capsys.readouterr().err, "--json", needle, rc=rc, code=2)
    rc = main(["bench", str(model), "--markdown", str(model)])
    assert_one_line_error(capsys.readouterr().err, "--markdown", "must end in .md", rc=rc, code=2)
    rc = main(["quant-report", str(model), "--reference", str(model), "--plot",
               str(model.with_suffix(".png")), "--json", str(model.with_suffix(".json"))])
    assert_one_line_error(capsys.readouterr().err, "--json", "is the model's sidecar", rc=rc, code=2)
    assert _tree(model.parent) == before


def test_an_output_inside_a_run_or_model_folder_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"trained weights")
    before = _tree(run)
    rc = main(["qat", str(run), "--steps", "1", "--json", str(run / "model.keras")])
    assert_one_line_error(capsys.readouterr().err, "--json", "must end in .json", rc=rc, code=2)
    rc = main(["qat", str(run), "--steps", "1", "--json", str(run / "qat.json")])
    assert_one_line_error(capsys.readouterr().err, "--json", "lies inside the run", rc=rc, code=2)
    rc = main(["export", str(run), "--out", str(run / "m.tflite")])
    assert_one_line_error(capsys.readouterr().err, "--out", "lies inside the model", rc=rc, code=2)
    assert _tree(run) == before


# ---------------------------------------------------- case 3: predictions over the ground truth
def test_save_predictions_into_the_dataset_or_the_scored_folder_is_refused(model, data, tmp_path,
                                                                          capsys):
    before = _tree(data)
    for target, needle in ((data / "masks", "lies inside the dataset"),
                           (data, "is the dataset"), (data.parent, "holds the dataset")):
        rc = _eval(model, data, "--save-predictions", str(target))
        assert_one_line_error(capsys.readouterr().err, "--save-predictions", needle, rc=rc, code=2)
    preds = tmp_path / "preds"
    shutil.copytree(data / "masks", preds)
    rc = main(["eval", "--predictions", str(preds), "--dataset", "folder", "--data-dir", str(data),
               "--split", "val", "--save-predictions", str(preds)])
    assert_one_line_error(capsys.readouterr().err, "is the --predictions folder", rc=rc, code=2)
    assert _tree(data) == before


# ------------------------------------- case 4: an interrupted --save-predictions keeps the old folder
def test_interrupted_save_predictions_leaves_the_earlier_folder_as_it_was(model, tmp_path, capsys):
    rng = np.random.default_rng(3)
    stripes = lambda rng, h, w, k: (np.indices((h, w)).sum(0) // 40 % k).astype(np.uint8)  # noqa: E731
    data, _ = make_folder_tree(tmp_path / "ds", rng, n=150, num_classes=3, split_files=False,
                               sizes=((240, 320),), exts=(".png",), scene=stripes, noise=0)
    out = tmp_path / "preds"
    assert main(["eval", str(model), "--dataset", "folder", "--data-dir", str(data), "--quiet",
                 "--max-images", "4", "--save-predictions", str(out)]) == 0
    capsys.readouterr()
    earlier = _tree(out)
    assert len(earlier) == 4
    cmd = [sys.executable, "-m", "edge_deeplab.app.cli", "eval", str(model), "--dataset", "folder",
           "--data-dir", str(data), "--quiet", "--save-predictions", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.getcwd()), preexec_fn=default_sigint)
    try:
        deadline = time.time() + 300
        started = []
        while time.time() < deadline and proc.poll() is None and not started:
            started = list(tmp_path.glob(".preds.*.tmp/*.png"))  # new predictions being written
            time.sleep(0.005)
        assert started and proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert _tree(out) == earlier  # not one prediction of the interrupted run mixed in
    assert not list(tmp_path.glob(".preds.*"))  # its temporary folder is gone


def test_a_complete_save_predictions_run_replaces_the_folder(model, data, tmp_path, capsys):
    out = tmp_path / "preds"
    out.mkdir()
    (out / "stale.png").write_bytes(b"from another model")
    assert _eval(model, data, "--save-predictions", str(out)) == 0
    stems = (data / "val.txt").read_text().split()
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.png" for s in stems)


# ---------------------------------------------- case 10: an id listed three times counts once
def _write_predictions(pred_dir, data, stems, flip_seed):
    pred_dir.mkdir()
    rng = np.random.default_rng(flip_seed)
    for s in stems:
        m = np.asarray(Image.open(data / "masks" / f"{s}.png"))
        p = np.where(m == 255, 0, m).astype(np.uint8)
        noise = rng.random(p.shape) < 0.3
        save_gray_png(pred_dir / f"{s}.png", np.where(noise, (p + 1) % 3, p).astype(np.uint8))


def test_a_split_listing_an_id_three_times_scores_it_once(data, tmp_path, capsys):
    val = (data / "val.txt").read_text().split()
    preds = tmp_path / "preds"
    _write_predictions(preds, data, val, 5)
    base = ["eval", "--predictions", str(preds), "--dataset", "folder", "--data-dir", str(data),
            "--quiet"]
    assert main([*base, "--split", "val", "--json", str(tmp_path / "unique.json")]) == 0
    (data / "dup.txt").write_text("\n".join([val[0], val[1], val[0], val[0]] + val[2:]) + "\n")
    assert main([*base, "--split", "dup", "--json", str(tmp_path / "dup.json")]) == 0
    err = capsys.readouterr().err
    assert f"{val[0]} x3" in err and "each is used once" in err
    unique, dup = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("unique", "dup"))
    assert dup["num_images"] == unique["num_images"] == len(val)
    assert dup["miou"] == unique["miou"]
    assert dup["confusion_matrix"] == unique["confusion_matrix"]


# ------------------------------------------------- case 12: no labelled pixel anywhere
def test_masks_without_a_labelled_pixel_are_refused_before_scoring_or_training(data, tmp_path,
                                                                               capsys):
    for p in (data / "masks").glob("*.png"):
        save_gray_png(p, np.full(np.asarray(Image.open(p)).shape, 255, np.uint8))
    rc = main(["eval", "--predictions", str(data / "masks"), "--dataset", "folder", "--data-dir",
               str(data), "--split", "val"])
    assert_one_line_error(capsys.readouterr().err, "no labelled pixel", "255 (ignore)", rc=rc, code=2)
    rc = main(["train", "--dataset", "folder", "--data-dir", str(data), "--out",
               str(tmp_path / "run"), "--steps", "1", "--preset", "fast", "--val-split", "none"])
    assert_one_line_error(capsys.readouterr().err, "no labelled pixel", rc=rc, code=2)
    assert not (tmp_path / "run" / "model.keras").exists()


# ------------------------------------------------------- case 11: label names that cannot work
def test_duplicate_or_empty_label_names_are_refused(tmp_path, data, capsys):
    keras = tmp_path / "m.keras"
    keras.write_bytes(b"not read: labels are checked first")
    cases = [("person,person,ball", "name 'person' twice (classes 0 and 1)"),
             ("background,,person", "empty name (class 1)"),
             (str(tmp_path / "missing.txt"), "--labels file not found"),
             (str(tmp_path), "is a directory")]
    for labels, needle in cases:
        rc = main(["export", str(keras), "--out", str(tmp_path / "x.tflite"), "--labels", labels])
        assert_one_line_error(capsys.readouterr().err, needle, rc=rc, code=2)
    rc = main(["build", "--out", str(tmp_path / "b.keras"), "--labels", "bg,Person,person",
               "--num-classes", "3"])
    assert_one_line_error(capsys.readouterr().err, "twice (classes 1 and 2)", rc=rc, code=2)
    (data / "labels.txt").write_text("background\nthing\nthing\n")
    rc = main(["eval", "--predictions", str(data / "masks"), "--dataset", "folder", "--data-dir",
               str(data), "--split", "val"])
    assert_one_line_error(capsys.readouterr().err, "labels.txt", "twice", rc=rc, code=2)
    assert not list(tmp_path.glob("*.tflite")) and not (tmp_path / "b.keras").exists()


# --------------------------------- case 6 (build), 13, 14: outputs checked before any work
def test_build_does_not_replace_an_existing_model_without_force(tmp_path, capsys):
    trained = tmp_path / "trained.keras"
    trained.write_bytes(b"a trained model")
    rc = main(["build", "--out", str(trained), "--input-size", "64", "--alpha", "0.35"])
    assert_one_line_error(capsys.readouterr().err, "already exists", "--force", rc=rc, code=2)
    assert trained.read_bytes() == b"a trained model"


def test_unwritable_and_wrong_kind_outputs_fail_at_once(tmp_path, data, capsys):
    (tmp_path / "afile").write_text("x")
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    train = ["train", "--dataset", "folder", "--data-dir", str(data), "--steps", "1"]
    cases = [
        (["quant-report", "q.tflite", "--reference", "f.tflite", "--json", "/proc/x.json"],
         ("--json", "not writable")),
        ([*train, "--out", "/proc/edge_deeplab_run"], ("--out", "not writable")),
        (["quickstart", "--out", "/proc/edge_deeplab_qs"], ("--out", "not writable")),
        ([*train, "--out", str(tmp_path / "afile")], ("--out", "exists and is not a directory")),
        ([*train, "--out", str(loop)], ("--out", "symlink loop")),
        (["eval", "--predictions", str(data / "masks"), "--dataset", "folder", "--data-dir",
          str(data), "--save-predictions", str(tmp_path / "afile")],
         ("--save-predictions", "exists and is not a directory")),
        (["export", "m.keras", "--out", str(tmp_path)], ("--out", "is a directory, not a file")),
        (["export", "m.keras", "--out", str(tmp_path / "m.onnx")], ("--out", "must end in .tflite")),
    ]
    for argv, needles in cases:
        rc = main(argv)
        assert_one_line_error(capsys.readouterr().err, *needles, rc=rc, code=2)
    assert (tmp_path / "afile").read_text() == "x"


# ---------------------------------------------- case 16: a sidecar that does not fit its model
@pytest.mark.kernels
def test_a_sidecar_edited_to_another_class_count_is_refused_before_conversion(tmp_path, data,
                                                                             capsys):
    keras = tmp_path / "m.keras"
    assert main(["build", "--out", str(keras), "--input-size", "64", "--alpha", "0.35",
                 "--num-classes", "3"]) == 0
    meta = json.loads(keras.with_suffix(".json").read_text())
    meta["config"].update(num_classes=5, labels=None)
    keras.with_suffix(".json").write_text(json.dumps(meta))
    capsys.readouterr()
    for argv in (["export", str(keras), "--out", str(tmp_path / "m.tflite")],
                 ["eval", str(keras), "--dataset", "folder", "--data-dir", str(data), "--quiet"]):
        rc = main(argv)
        assert_one_line_error(capsys.readouterr().err, "says 5 classes", "outputs 3",
                              "does not belong", rc=rc, code=2)
    assert not (tmp_path / "m.tflite").exists()


# ------------------------------------------- case 19: native chatter never reaches stdout
@pytest.mark.gpu
def test_gpu_accelerator_chatter_stays_off_stdout(model, data):
    """LiteRT's GPU accelerator printed "INFO: Failed to load OpenCL library ..." on stdout."""
    r = subprocess.run([sys.executable, "-m", "edge_deeplab.app.cli", "eval", str(model),
                        "--dataset", "folder", "--data-dir", str(data), "--split", "val",
                        "--accelerator", "gpu", "--quiet"], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mIoU ") and "images) - " in lines[0], r.stdout


# --------------------------------------- case 21: a successful export says nothing on stderr
@pytest.mark.kernels
def test_a_successful_export_writes_nothing_on_stderr(tmp_path):
    keras = tmp_path / "m.keras"
    cli = [sys.executable, "-m", "edge_deeplab.app.cli"]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    r = subprocess.run([*cli, "build", "--out", str(keras), "--input-size", "64", "--alpha",
                        "0.35", "--num-classes", "3"], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cli, "export", str(keras), "--out", str(tmp_path / "m.tflite")],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout.startswith(f"wrote {tmp_path / 'm.tflite'}"), r.stderr


# ------------------------------------------- case 20: analyze reports corrupt metadata
def test_analyze_reports_corrupt_metadata_that_eval_refuses(model, data, tmp_path, capsys):
    raw = model.read_bytes()
    assert raw.count(b'"labels":') >= 1
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(raw.replace(b'"labels":', b'"labels"!'))  # same length, no longer JSON
    rc = _eval(bad, data)
    line = assert_one_line_error(capsys.readouterr().err, "corrupt", rc=rc, code=2)
    rc = main(["analyze", str(bad), "--no-gpu"])
    out, err = capsys.readouterr()
    assert rc == 1 and "metadata: UNUSABLE: corrupt" in out
    assert_one_line_error(err, "corrupt", rc=rc, prefix="edge-deeplab analyze: error:")
    assert line.split("error: ", 1)[1] in err  # the same finding as eval's
    rc = main(["analyze", str(model), "--no-gpu"])
    assert rc == 0 and "UNUSABLE" not in capsys.readouterr().out


# ----------------------------- case 18: quant-report says when it compares only part of the graph
@pytest.mark.kernels
def test_quant_report_names_the_ops_a_float16_reference_leaves_uncompared(pytestconfig, capsys):
    import re

    from tests.support.tiny import tiny_tflite

    q = tiny_tflite(pytestconfig, "int8")
    counts = {}
    for ref in ("float32", "float16"):
        rc = main(["quant-report", str(q), "--reference", str(tiny_tflite(pytestconfig, ref)),
                   "--images", "2"])
        out = capsys.readouterr().out
        assert rc == 0
        m = re.search(r"(\d+) of (\d+) op outputs compared", out)
        counts[ref] = (int(m.group(1)), int(m.group(2)))
        hinted = "pass the float32 export as --reference" in out
        assert hinted == (ref == "float16"), out
        if counts[ref][0] < counts[ref][1]:
            assert f"note: {counts[ref][1] - counts[ref][0]} op outputs have no counterpart" in out
    assert counts["float16"][0] < counts["float16"][1] and counts["float16"][1] == counts["float32"][1]


# ------------------------------ cases 15, 17: models eval cannot feed are named in one line
@pytest.mark.kernels
def test_eval_names_a_grey_a_two_input_or_a_dynamic_input_model(data, tmp_path, capsys):
    from edge_deeplab.core._tf import keras, tf

    grey = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(3, 1)])
    a, b = keras.Input((32, 32, 3)), keras.Input((32, 32, 3))
    two = keras.Model([a, b], keras.layers.Conv2D(3, 1)(keras.layers.Add()([a, b])))
    free = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 1)])
    mask = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(1, 1, activation="sigmoid")])
    for name, m in (("grey", grey), ("two", two), ("free", free), ("mask", mask)):
        (tmp_path / f"{name}.tflite").write_bytes(
            tf.lite.TFLiteConverter.from_keras_model(m).convert())
    rc = _eval(tmp_path / "grey.tflite", data)
    assert_one_line_error(capsys.readouterr().err, "grey.tflite takes 1-channel images",
                          "[1, 32, 32, 1]", rc=rc, code=2)
    rc = _eval(tmp_path / "two.tflite", data)
    assert_one_line_error(capsys.readouterr().err, "two.tflite", "it has 2 inputs",
                          "[1, 32, 32, 3], [1, 32, 32, 3]", rc=rc, code=2)
    rc = _eval(tmp_path / "free.tflite", data)  # was reported as input shape [1, 1, 1, 3]
    assert_one_line_error(capsys.readouterr().err, "free.tflite has a dynamic input shape",
                          "[-1, -1, -1, 3]", rc=rc, code=2)
    rc = _eval(tmp_path / "mask.tflite", data, "--classes", "background,thing1")  # was: use --classes
    assert_one_line_error(capsys.readouterr().err, "outputs a single channel (a sigmoid mask",
                          "against the 2 classes", rc=rc, code=2)


@pytest.mark.kernels
def test_an_invalid_keep_float_pattern_is_named_as_invalid(tmp_path, capsys):
    keras = tmp_path / "m.keras"
    assert main(["build", "--out", str(keras), "--input-size", "64", "--alpha", "0.35",
                 "--num-classes", "3"]) == 0
    capsys.readouterr()
    rc = main(["export", str(keras), "--variant", "int8", "--keep-float", "([",
               "--out", str(tmp_path / "m.tflite")])
    assert_one_line_error(capsys.readouterr().err, "'([' is not a valid regular expression",
                          "unterminated character set", rc=rc, code=2)
    assert not (tmp_path / "m.tflite").exists()
