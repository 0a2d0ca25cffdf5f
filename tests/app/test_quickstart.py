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
