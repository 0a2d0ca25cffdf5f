"""Issue 20: run folders with a state, through the CLI: a finished run is not retrained without
--force (which keeps the old run aside), --resume on it touches nothing, one writer at a time (the
lock names the holder's pid; a dead holder's lock is taken over), and a QAT model built from float
weights that changed since is refused by export, eval and qat --resume, and redone by qat."""

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_deeplab.app.cli import main
from tests.support.cli import assert_one_line_error

pytestmark = pytest.mark.kernels  # trains and quantizes: CI runs these again with oneDNN on


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from edge_deeplab.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("syn"), num_train=8, num_val=4, size=64)


def _train(data, out, *extra, steps=4):
    return ["train", "--dataset", "synthetic", "--data-dir", str(data), "--out", str(out),
            "--steps", str(steps), "--checkpoint-every", "2", "--batch-size", "4", "--preset",
            "fast", "--val-split", "none", "--aspp-filters", "16", "--decoder-filters", "16",
            "--low-level-filters", "8", *extra]


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A finished 4-step run made by `edge-deeplab train`."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(_train(data, run)) == 0
    return run


def _snapshot(root) -> dict:
    """Every file under ``root`` with its size and modification time (what "touched" means)."""
    root = Path(root)
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _copy(run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def test_a_finished_run_records_that_it_is_complete(finished):
    done = json.loads((finished / "complete.json").read_text())
    result = json.loads((finished / "train_result.json").read_text())
    assert done["final_step"] == done["total_steps"] == result["final_step"] == 4
    import hashlib

    assert done["model_sha256"] == hashlib.sha256((finished / "model.keras").read_bytes()).hexdigest()
    assert not (finished / ".lock").exists()  # released at the end


def test_resume_on_a_finished_run_says_so_and_touches_nothing(data, finished, tmp_path, capsys):
    """Case 8: it used to rewrite last.keras, the checkpoints and train_result.json (loss_history
    [], final_loss null)."""
    run = _copy(finished, tmp_path)
    before = _snapshot(run)
    assert main(_train(data, run, "--resume")) == 0
    out, err = capsys.readouterr()
    assert "already complete (4/4 steps); nothing to do" in err
    assert _snapshot(run) == before
    assert json.loads(out.splitlines()[0])["final_step"] == 4


def test_a_finished_run_is_not_retrained_without_force_and_force_keeps_it_aside(data, finished,
                                                                                 tmp_path, capsys):
    """Case 6: a finished run whose checkpoints/ was removed was silently retrained."""
    run = _copy(finished, tmp_path)
    shutil.rmtree(run / "checkpoints")
    (run / "complete.json").unlink()  # even without the marker: the trained model is evidence
    before = _snapshot(run)
    trained = (run / "model.keras").read_bytes()
    rc = main(_train(data, run))
    assert_one_line_error(capsys.readouterr().err, "already has a trained model (model.keras)",
                          "--force", rc=rc, code=2)
    assert _snapshot(run) == before
    rc = main(_train(data, run, "--resume", "--force"))
    assert_one_line_error(capsys.readouterr().err, "give one", rc=rc, code=2)
    assert main(_train(data, run, "--force", steps=2)) == 0
    assert "previous run was moved to" in capsys.readouterr().err
    assert (run / "previous-1" / "model.keras").read_bytes() == trained
    assert json.loads((run / "complete.json").read_text())["final_step"] == 2


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(
        data, tmp_path, capsys):
    """Case 7: the same train started twice wrote into one folder. Here a real first `train`
    holds the run while a second one starts."""
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "edge_deeplab.app.cli",
                              *_train(data, run, steps=100000)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None and not (run / ".lock").is_file():
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()[-2000:]
        assert json.loads((run / ".lock").read_text())["pid"] == first.pid
        for argv in (_train(data, run), _train(data, run, "--force"),
                     ["qat", str(run), "--steps", "1"]):
            rc = main(argv)
            assert_one_line_error(capsys.readouterr().err, f"pid {first.pid}", "is being written by train",
                                  rc=rc, code=2)
    finally:
        first.kill()
        first.wait(timeout=60)
    # the killed writer's lock is stale now: the next writer takes it over and says so
    assert (run / ".lock").is_file()
    assert main(_train(data, run, "--force", steps=2)) == 0
    err = capsys.readouterr().err
    assert f"taking over a stale lock of pid {first.pid}" in err
    assert json.loads((run / "complete.json").read_text())["final_step"] == 2
    assert not (run / ".lock").exists()


QAT_ARGS = ["--steps", "2", "--checkpoint-every", "1", "--calibration-batches", "1", "--no-eval",
            "--quiet"]


@pytest.fixture(scope="module")
def stale_qat(data, finished, tmp_path_factory):
    """Case 9's state: `qat` on an unfinished run, then `train --resume` finished it (new float
    weights): ``(run, the origin QAT recorded)``."""
    run = _copy(finished, tmp_path_factory.mktemp("stale"))
    for name in ("complete.json", "train_result.json"):  # as if killed right after ckpt-2
        (run / name).unlink()
    for p in (run / "checkpoints").glob("ckpt-4*"):
        p.unlink()
    assert main(["qat", str(run), *QAT_ARGS]) == 0
    origin = json.loads((run / "qat" / "origin.json").read_text())
    assert main(_train(data, run, "--resume")) == 0  # finishes steps 3-4
    return run, origin


def test_a_qat_model_from_float_weights_that_changed_is_refused(data, stale_qat, tmp_path, capsys):
    """Case 9: export qat-int8, eval --qat and qat --resume used the stale QAT model without a word."""
    run, origin = stale_qat
    capsys.readouterr()
    assert origin["sha256"] != json.loads((run / "complete.json").read_text())["model_sha256"]
    qat_before = _snapshot(run / "qat")
    for argv in (["export", str(run), "--variant", "qat-int8", "--out", str(tmp_path / "q.tflite")],
                 ["eval", str(run), "--qat", "--dataset", "synthetic", "--data-dir", str(data)]):
        rc = main(argv)
        assert_one_line_error(capsys.readouterr().err, "QAT model", "is stale",
                              "model.keras changed", rc=rc, code=2)
    rc = main(["qat", str(run), *QAT_ARGS, "--resume"])
    assert_one_line_error(capsys.readouterr().err, "--resume", "model.keras changed", rc=rc, code=2)
    assert _snapshot(run / "qat") == qat_before and not (tmp_path / "q.tflite").exists()


def test_qat_redoes_a_stale_qat_and_resume_on_a_finished_qat_touches_nothing(stale_qat, tmp_path,
                                                                             capsys):
    run = _copy(stale_qat[0], tmp_path)
    assert main(["qat", str(run), *QAT_ARGS]) == 0
    assert "redoing QAT" in capsys.readouterr().err
    assert (run / "qat" / "previous-1" / "model.h5").is_file()  # the old one kept aside
    new_origin = json.loads((run / "qat" / "origin.json").read_text())
    assert new_origin["sha256"] == json.loads((run / "complete.json").read_text())["model_sha256"]
    from edge_deeplab.app.commands.common import require_current_qat

    require_current_qat(run)  # current again: no error
    before = _snapshot(run / "qat")
    assert main(["qat", str(run), *QAT_ARGS, "--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert _snapshot(run / "qat") == before


def test_lock_module_refuses_a_live_holder_in_one_line(tmp_path):
    """The lock's own contract, with a live process (not this one) as the holder."""
    from edge_deeplab.core.errors import EdgeDeeplabError
    from edge_deeplab.core.run_state import run_lock

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                    "command": "qat"}))
        with pytest.raises(EdgeDeeplabError) as e:
            with run_lock(tmp_path, "train"):
                pass
        assert_one_line_error(e, f"pid {holder.pid}", "being written by qat")
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid  # left alone
    finally:
        holder.kill()
        holder.wait()
