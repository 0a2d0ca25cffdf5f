"""The main job end to end (``--fast``: same code path as the full quickstart, tiny model)."""

import json
import subprocess
import sys

import cv2
import pytest

from edge_deeplab.app.quickstart.run import ACCURACY_KEYS


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "quickstart"
    proc = subprocess.run([sys.executable, "-m", "edge_deeplab.app.cli", "quickstart", "--out", str(out), "--fast"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_fast_quickstart_writes_every_artifact(fast_run):
    out, proc = fast_run
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {"accuracy", "speed", "models", "config", "machine"}
    assert set(report["accuracy"]) == set(ACCURACY_KEYS)
    for key, miou in report["accuracy"].items():
        assert 0.0 <= miou <= 1.0, key
    # Exports agree with the Keras model they came from (same eval code path).
    f = report["accuracy"]["keras_float"]
    assert abs(report["accuracy"]["tflite_float32"] - f) < 0.01
    for key, m in report["models"].items():
        assert (out / "models" / m["path"].split("/")[-1]).is_file()
        assert m["size_bytes"] > 0 and m["ops"]
        assert not {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "MUL"} & set(m["ops"]), key
    results = report["speed"]["results"]
    assert {r["accelerator"] for r in results} >= {"cpu"}
    assert all(r["latency_ms"]["p50"] > 0 and r["fps"] > 0 for r in results)
    md = (out / "report.md").read_text()
    assert "| TFLite int8 (QAT) |" in md and "predictions.png" in md and "miou_vs_fps.png" in md
    for name in ("predictions.png", "miou_vs_fps.png"):
        assert cv2.imread(str(out / name)) is not None, name
    cap = cv2.VideoCapture(str(out / "demo.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) > 0
    # The user sees step progress, not native runtime chatter.
    assert "[9/9] demo" in proc.stdout
    assert "INFO: [" not in proc.stderr and "I0000" not in proc.stderr


def test_rerun_resumes_instead_of_repeating(fast_run):
    out, _ = fast_run
    before = (out / "models" / "int8_qat.tflite").stat().st_mtime_ns
    proc = subprocess.run([sys.executable, "-m", "edge_deeplab.app.cli", "quickstart", "--out", str(out), "--fast"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for step in ("data", "train", "qat", "export", "analyze", "accuracy", "bench"):
        assert f"{step}" in proc.stdout and "skipped" in proc.stdout
    assert proc.stdout.count("done earlier, skipped") >= 7
    assert (out / "models" / "int8_qat.tflite").stat().st_mtime_ns == before


def test_fast_and_full_runs_do_not_mix(fast_run):
    out, _ = fast_run
    proc = subprocess.run([sys.executable, "-m", "edge_deeplab.app.cli", "quickstart", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "--fast" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# ------------------------------------------------- issue 12: --out must be empty or our own run
def test_quickstart_refuses_a_foreign_non_empty_folder(tmp_path, capsys):
    from edge_deeplab.app.cli import main

    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.json").write_text('{"my": "own report"}')
    rc = main(["quickstart", "--out", str(out), "--fast"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not a quickstart run" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    assert (out / "report.json").read_text() == '{"my": "own report"}'


def test_quickstart_marks_its_folder_first_and_resumes_it(tmp_path, monkeypatch, capsys):
    """An interrupted run (marker written, nothing finished) is resumed, not refused."""
    import edge_deeplab.data.synthetic as synthetic
    from edge_deeplab.app.cli import main
    from edge_deeplab.app.quickstart.run import MARKER

    calls = []

    def interrupted(*a, **k):
        calls.append(a)
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "ensure_synthetic", interrupted)
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--fast", "--no-gpu"]) == 130
    assert (out / MARKER).is_file()
    assert main(["quickstart", "--out", str(out), "--fast", "--no-gpu"]) == 130  # not refused
    assert len(calls) == 2 and "not a quickstart run" not in capsys.readouterr().err
    # a run from before the marker existed is recognised by its steps/settings.json
    (out / MARKER).unlink()
    assert main(["quickstart", "--out", str(out), "--fast", "--no-gpu"]) == 130
    assert (out / MARKER).is_file()
