"""Training: loss, schedule, configs, a real (tiny) run, strategies, kill + --resume via the CLI."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.model.config import TrainConfig
from edge_deeplab.model.presets import FAST_MODEL, FAST_TRAIN, QUICKSTART_MODEL, QUICKSTART_TRAIN
from edge_deeplab.training.train import decay_variables, masked_cross_entropy, train
from tests.support.cli import assert_one_line_error
from tests.support.tiny import seeded_model, tiny_config
from tests.support.training_evidence import first_step_losses

pytestmark = pytest.mark.kernels  # CI runs these again with oneDNN on

#: The synthetic dataset's 5 classes, narrow heads.
TINY_MODEL = tiny_config(num_classes=5, aspp_filters=16, low_level_filters=8, decoder_filters=16)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from edge_deeplab.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("syn"), num_train=16, num_val=6, size=64)


def tiny_train(data_dir, **kw):
    base = dict(dataset="synthetic", data_dir=str(data_dir), steps=4, batch_size=4,
                checkpoint_every=2, lr=1e-3, bn_momentum=0.9, min_scale=0.75, max_scale=1.25)
    base.update(kw)
    return TrainConfig(**base)


def test_masked_cross_entropy_ignores_255():
    from edge_deeplab.core._tf import tf

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=(2, 3, 4)).astype(np.int32)
    labels[0, 0, :] = 255
    labels[1, 2, 1] = 255
    total, count = (float(v) for v in masked_cross_entropy(tf.constant(labels), tf.constant(logits)))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = labels != 255
    ref = -np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], -1)[..., 0][valid]
    assert count == valid.sum() == 24 - 5
    assert np.isclose(total, ref.sum(), rtol=1e-5)
    # All ignored: zero loss, zero count (the caller divides by max(count, 1)).
    t2, c2 = masked_cross_entropy(tf.fill((1, 2, 2), 255), tf.constant(logits[:1, :2, :2]))
    assert float(t2) == 0.0 and float(c2) == 0.0


def test_poly_schedule():
    from edge_deeplab.training.schedules import PolyDecay

    s = PolyDecay(0.1, total_steps=10, power=0.9)
    vals = [float(s(i)) for i in range(12)]
    assert vals[0] == pytest.approx(0.1)
    assert vals[5] == pytest.approx(0.1 * 0.5 ** 0.9, rel=1e-5)
    assert all(a > b for a, b in zip(vals[:10], vals[1:10]))
    assert vals[10] == vals[11] == 0.0
    w = PolyDecay(0.1, total_steps=100, warmup_steps=10)
    assert float(w(0)) == pytest.approx(0.01) and float(w(10)) == pytest.approx(0.1 * 0.9 ** 0.9)
    assert PolyDecay.from_config(s.get_config()).get_config() == s.get_config()


def test_weight_decay_only_on_kernels():
    m = seeded_model(TINY_MODEL)
    names = [v.name for v in decay_variables(m)]
    assert names and all("kernel" in n for n in names)
    assert not any("gamma" in n or "beta" in n or "bias" in n for n in names)
    assert any("depthwise_kernel" in n for n in names)


def test_train_config_validation_and_presets():
    with pytest.raises(EdgeDeeplabError, match="not both"):
        TrainConfig(steps=3, epochs=1)
    with pytest.raises(EdgeDeeplabError):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(EdgeDeeplabError):
        TrainConfig(strategy="tpu")
    with pytest.raises(EdgeDeeplabError):
        TrainConfig(lr=0)
    tc = TrainConfig(classes="background,person", steps=5)
    assert tc.classes == ("background", "person")
    assert TrainConfig.from_dict(json.loads(json.dumps(tc.to_dict()))) == tc
    assert QUICKSTART_MODEL.num_classes == 5 and QUICKSTART_MODEL.resolved_labels()[1] == "person"
    assert FAST_MODEL.input_size == (64, 64) and FAST_TRAIN.steps < QUICKSTART_TRAIN.steps


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("tiny") / "run"
    result = train(TINY_MODEL, tiny_train(tiny_data, recalibrate_batches=2), run, verbose=0)
    return run, result


def test_tiny_training_run_writes_a_complete_run_dir(tiny_data, tiny_run):
    from edge_deeplab.model.model_io import load_model

    run, result = tiny_run
    assert result["total_steps"] == result["final_step"] == 4 and result["start_step"] == 0
    # best is the best of the validations TensorBoard logged (steps 2 and 4), the first on a tie;
    # final is the last one (the saved models reproduce both below)
    logged = logged_scalars(run / "logs", "val/miou")
    assert sorted(logged) == [2, 4]
    assert result["best_miou"] == pytest.approx(max(logged.values()), abs=1e-6)
    assert result["best_step"] == min(s for s, v in logged.items() if v == max(logged.values()))
    assert result["final_miou"] == pytest.approx(logged[4], abs=1e-6)
    for name in ("model.keras", "model.json", "last.keras", "train_config.json",
                 "train_result.json"):
        assert (run / name).is_file(), name
    assert any((run / "logs").iterdir())
    assert sorted(p.name for p in (run / "checkpoints").glob("ckpt-*.index")) == \
        ["ckpt-2.index", "ckpt-4.index"]
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["train"]["steps"] == 4 and saved["model"]["num_classes"] == 5
    model, cfg, meta = load_model(run / "model.keras")
    assert cfg.labels == ("background", "person", "ball", "box", "cone")
    assert model.output_shape == (None, 64, 64, 5)
    assert meta["val_miou"] == pytest.approx(result["best_miou"])
    # The saved best model reproduces the recorded val mIoU.
    from edge_deeplab.data import load_dataset
    from edge_deeplab.training.train import evaluate_model

    res = evaluate_model(model, load_dataset("folder", tiny_data, "val"), (64, 64))
    assert res["miou"] == pytest.approx(result["best_miou"], abs=1e-6)
    last, _, _ = load_model(run / "last.keras")
    res = evaluate_model(last, load_dataset("folder", tiny_data, "val"), (64, 64))
    assert res["miou"] == pytest.approx(result["final_miou"], abs=1e-6)


def logged_scalars(logdir, tag) -> dict:
    """``{step: value}`` of a scalar in a TensorBoard log folder, read from the event files."""
    from edge_deeplab.core._tf import tf

    out = {}
    for f in sorted(Path(logdir).rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                if v.tag == tag:
                    out[int(event.step)] = float(tf.make_ndarray(v.tensor)) if v.HasField("tensor") \
                        else float(v.simple_value)
    return out


def test_existing_checkpoints_need_resume(tiny_data, tiny_run):
    run, _ = tiny_run
    with pytest.raises(EdgeDeeplabError, match="--resume"):
        train(TINY_MODEL, tiny_train(tiny_data), run, verbose=0)


def test_class_count_mismatch_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(EdgeDeeplabError, match="--num-classes 5"):
        train(dataclasses.replace(TINY_MODEL, num_classes=3), tiny_train(tiny_data),
              tmp_path / "r", verbose=0)


_MIRRORED_2_CPUS = """
import json, sys
from edge_deeplab.core._tf import tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from edge_deeplab.model.config import ModelConfig, TrainConfig
from edge_deeplab.training.train import train
mc, tc = ModelConfig.from_dict(json.loads(sys.argv[1])), TrainConfig.from_dict(json.loads(sys.argv[2]))
print("RESULT " + json.dumps(train(mc, tc, sys.argv[3], verbose=0)))
"""


def test_sgd_and_mirrored_strategy_on_two_cpu_replicas(tiny_data, tmp_path):
    """Mirrored over 2 logical CPU devices: 2 replicas, each on half of the global batch of 4.

    Evidence it ran that way: step 1's logged loss equals the mean of the two halves' losses of the
    initial model on the first global batch (recomputed here, 1e-4), not the pooled 4-image loss;
    SGD evidence: the checkpoint holds SGD's momentum slots and no Adam moments."""
    from edge_deeplab.core._tf import tf

    run = tmp_path / "run"
    tc = tiny_train(tiny_data, optimizer="sgd", strategy="mirrored", steps=2, checkpoint_every=2,
                    lr=0.01, val_max_images=2, recalibrate_batches=1, log_every=1)
    p = subprocess.run([sys.executable, "-c", _MIRRORED_2_CPUS, json.dumps(TINY_MODEL.to_dict()),
                        json.dumps(tc.to_dict()), str(run)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(next(l for l in p.stdout.splitlines() if l.startswith("RESULT "))[7:])
    assert result["num_replicas"] == 2 and result["final_step"] == 2
    step1 = first_step_losses(run, tiny_data)
    loss1 = dict(map(tuple, result["loss_history"]))[1]
    assert loss1 == pytest.approx(step1[2], rel=1e-4), (loss1, step1)
    assert abs(step1[1] - step1[2]) > 1e-3 * step1[1]  # the pooled loss would be told apart
    slots = [n for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(str(run / "checkpoints")))
             if n.startswith("optimizer/")]
    # SGD with momentum keeps one slot per trainable weight (Adam would keep two: m and v).
    n_weights = len(seeded_model(TINY_MODEL).trainable_variables)
    n_slots = len({n.split("/")[2] for n in slots if n.startswith("optimizer/_variables/")})
    assert n_slots in (n_weights, n_weights + 1), (n_slots, n_weights)
    assert result["best_miou"] is not None and (run / "model.keras").is_file()


def _cli(*args):
    return [sys.executable, "-m", "edge_deeplab.app.cli", "train", *args]


def test_cli_kill_and_resume(tiny_data, tmp_path):
    """SIGKILL a real `edge-deeplab train` mid-run, resume, and finish at the requested steps."""
    run = tmp_path / "run"
    args = ["--dataset", "synthetic", "--data-dir", str(tiny_data), "--out", str(run),
            "--steps", "120", "--checkpoint-every", "10", "--batch-size", "4", "--preset", "fast",
            "--val-split", "none",
            "--aspp-filters", "16", "--decoder-filters", "16", "--low-level-filters", "8"]
    env = dict(os.environ, EDGE_DEEPLAB_DEBUG="1")
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    ckpts = run / "checkpoints"
    from edge_deeplab.core._tf import tf

    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if ckpts.is_dir() and tf.train.latest_checkpoint(str(ckpts)):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    latest = tf.train.latest_checkpoint(str(ckpts))
    saved_step = int(latest.rsplit("-", 1)[1])
    assert 10 <= saved_step < 120 and not (run / "train_result.json").exists()

    # Resume: continues at the checkpointed step and stops at the requested total.
    r = subprocess.run(_cli(*args, "--resume"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stdout and f"at step {saved_step}/120" in r.stdout
    result = json.loads((run / "train_result.json").read_text())
    assert result["start_step"] == saved_step and result["resumed"]
    assert result["final_step"] == result["total_steps"] == 120
    assert (run / "model.keras").is_file() and (run / "last.keras").is_file()


def test_cli_bad_input_is_one_line(tmp_path):
    r = subprocess.run(_cli("--dataset", "folder", "--data-dir", str(tmp_path / "nope"),
                            "--out", str(tmp_path / "r"), "--steps", "1"),
                       capture_output=True, text=True, timeout=120)
    assert_one_line_error(r, "not found")


# --------------------------------------------------- issue 12: damaged checkpoints and --resume
def _tiny_cli_args(data_dir, out):
    return ["train", "--dataset", "synthetic", "--data-dir", str(data_dir), "--out", str(out),
            "--steps", "4", "--checkpoint-every", "2", "--batch-size", "4", "--preset", "fast",
            "--val-split", "none", "--aspp-filters", "16", "--decoder-filters", "16",
            "--low-level-filters", "8"]


@pytest.fixture(scope="module")
def finished_cli_run(tiny_data, tmp_path_factory):
    """A finished 4-step run made by `edge-deeplab train` (checkpoints ckpt-2 and ckpt-4)."""
    from edge_deeplab.app.cli import main

    run = tmp_path_factory.mktemp("cli_run") / "run"
    assert main(_tiny_cli_args(tiny_data, run)) == 0
    assert [p.name for p in sorted((run / "checkpoints").glob("ckpt-*.index"))] == \
        ["ckpt-2.index", "ckpt-4.index"]
    return run


def _copy_run(run, tmp_path):
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _truncate_data(run, step):
    (data,) = (run / "checkpoints").glob(f"ckpt-{step}.data-*")
    with open(data, "r+b") as f:
        f.truncate(max(1, data.stat().st_size // 3))
    return data


def _snapshot(d):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(d).iterdir()}


def test_cli_resume_skips_a_truncated_checkpoint_and_names_it(tiny_data, finished_cli_run,
                                                               tmp_path, capsys):
    from edge_deeplab.app.cli import main

    run = _copy_run(finished_cli_run, tmp_path)
    (run / "complete.json").unlink()  # killed after its last checkpoint, before it finished
    bad = _truncate_data(run, 4)
    (run / "checkpoints" / "checkpoint").write_text("garbage {{{ not a state file\n")
    rc = main(_tiny_cli_args(tiny_data, run) + ["--resume"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert bad.name in err and "ckpt-4" in err and "IndexError" in err  # named, not a traceback
    assert "resuming from" in out and "ckpt-2 at step 2/4" in out
    result = json.loads((run / "train_result.json").read_text())
    assert result["start_step"] == 2 and result["final_step"] == 4 and result["resumed"]


def test_cli_resume_with_no_loadable_checkpoint_stops_and_keeps_files(tiny_data, finished_cli_run,
                                                                       tmp_path, capsys):
    from edge_deeplab.app.cli import main

    run = _copy_run(finished_cli_run, tmp_path)
    (run / "complete.json").unlink()  # killed after its last checkpoint, before it finished
    bad4, bad2 = _truncate_data(run, 4), _truncate_data(run, 2)
    before = _snapshot(run / "checkpoints")
    rc = main(_tiny_cli_args(tiny_data, run) + ["--resume"])
    assert_one_line_error(capsys.readouterr().err, bad4.name, bad2.name, "no checkpoint", rc=rc,
                          code=2)
    assert _snapshot(run / "checkpoints") == before


def test_cli_fresh_start_never_overwrites_checkpoints_behind_a_damaged_state_file(
        tiny_data, finished_cli_run, tmp_path, capsys):
    from edge_deeplab.app.cli import main

    run = _copy_run(finished_cli_run, tmp_path)
    (run / "checkpoints" / "checkpoint").write_text("garbage\n")
    before = _snapshot(run / "checkpoints")
    rc = main(_tiny_cli_args(tiny_data, run))
    assert_one_line_error(capsys.readouterr().err, "already has checkpoints", rc=rc, code=2)
    assert _snapshot(run / "checkpoints") == before


def test_cli_resume_with_a_mistyped_out_is_an_error(tiny_data, tmp_path, capsys):
    from edge_deeplab.app.cli import main

    rc = main(_tiny_cli_args(tiny_data, tmp_path / "runn") + ["--resume"])
    assert_one_line_error(capsys.readouterr().err, "does not exist", rc=rc, code=2)
    assert not (tmp_path / "runn").exists()
    (tmp_path / "empty").mkdir()
    rc = main(_tiny_cli_args(tiny_data, tmp_path / "empty") + ["--resume"])
    assert_one_line_error(capsys.readouterr().err, "no checkpoints", rc=rc, code=2)
    assert list((tmp_path / "empty").iterdir()) == []


# ------------------------------------------- issue 12: run directories record absolute data paths
def test_run_records_absolute_data_dir_and_qat_runs_from_any_directory(tiny_data, tmp_path,
                                                                       monkeypatch, capsys):
    import shutil

    from edge_deeplab.app.cli import main

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    shutil.copytree(tiny_data, work / "data")
    monkeypatch.chdir(work)
    assert main(_tiny_cli_args("data", "run")) == 0  # relative --data-dir and --out, as typed
    saved = json.loads((work / "run" / "train_config.json").read_text())["train"]
    assert saved["data_dir"] == str(work / "data")

    monkeypatch.chdir(elsewhere)
    qat_args = ["qat", str(work / "run"), "--steps", "1", "--calibration-batches", "0",
                "--no-eval", "--quiet"]
    capsys.readouterr()
    assert main(qat_args) == 0, capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []  # nothing generated here
    assert (work / "run" / "qat" / "model.h5").is_file()

    # The recorded dataset is gone: one line naming it, and no data generated anywhere.
    shutil.rmtree(work / "run" / "qat")
    (work / "data").rename(work / "data_moved")
    capsys.readouterr()
    rc = main(qat_args)
    assert_one_line_error(capsys.readouterr().err, str(work / "data"), "missing", rc=rc, code=2)
    assert not (work / "data").exists() and list(elsewhere.iterdir()) == []


def test_cli_progress_in_a_piped_log_is_one_short_line_per_interval(tiny_data, tmp_path):
    """Piped stdout (a log file, CI): train and qat print whole progress lines, not a carriage-return
    bar (which put a 62 KB line into a quickstart log)."""
    run = tmp_path / "run"
    r = subprocess.run(_cli("--dataset", "synthetic", "--data-dir", str(tiny_data), "--out", str(run),
                            "--steps", "40", "--checkpoint-every", "20", "--batch-size", "2",
                            "--preset", "fast", "--val-split", "none", "--aspp-filters", "16",
                            "--decoder-filters", "16", "--low-level-filters", "8"),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    q = subprocess.run([sys.executable, "-m", "edge_deeplab.app.cli", "qat", str(run), "--steps", "20",
                        "--checkpoint-every", "10", "--calibration-batches", "1", "--no-eval"],
                       capture_output=True, text=True, timeout=900)
    assert q.returncode == 0, q.stderr[-2000:]
    for out, name, total in ((r.stdout, "train", 40), (q.stdout, "qat", 20)):
        assert "\r" not in out and "\b" not in out
        assert max(len(line) for line in out.splitlines()) <= 300
        steps = [int(line.split()[2].split("/")[0]) for line in out.splitlines()
                 if line.startswith(f"{name}: step ")]
        # one line every 5% of the run, in order, ending at the last step
        assert steps == list(range(total // 20, total + 1, total // 20)), out
