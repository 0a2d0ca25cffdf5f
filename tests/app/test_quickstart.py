"""The main job end to end (``--fast``: same code path as the full quickstart, tiny model)."""

import json
import shutil
import subprocess
import sys

import cv2
import pytest

from edge_deeplab.app.quickstart.checks import (
    FAST_THRESHOLDS,
    FULL_THRESHOLDS,
    evaluate_checks,
    failed_checks,
)
from edge_deeplab.app.quickstart.plan import ACCURACY_KEYS, EXPORTS, GPU_CHECKED, QUANT_REPORTED


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
    acc = report["accuracy"]
    # The --fast checks, with the --fast thresholds (the report says which ones it used).
    f, q, p = acc["keras_float"], acc["int8_qat"], acc["int8_ptq"]
    assert report["thresholds"]["float_miou"] == FAST_THRESHOLDS["float_miou"] < FULL_THRESHOLDS["float_miou"]
    assert f >= FAST_THRESHOLDS["float_miou"], acc
    assert (f - q) * 100 <= FAST_THRESHOLDS["qat_drop_points"], acc
    assert (p - q) * 100 <= FAST_THRESHOLDS["qat_vs_ptq_points"], acc
    assert report["checks"]["float_miou"] and report["checks"]["qat_within_float"] \
        and report["checks"]["qat_not_below_ptq"] and report["checks"]["w8a16_not_below_ptq"], \
        report["check_details"]
    assert failed_checks(report) == [] and "check failed" not in proc.stderr
    # Exports agree with the Keras model they came from (same eval code path).
    assert abs(acc["tflite_float32"] - f) < 0.002 and abs(acc["tflite_float16"] - f) < 0.005
    # w8a16 (issue 14): int16 activations keep int8's accuracy, measured by the same eval (the
    # --fast smoke model's floor; the full run holds w8a16 >= PTQ, test_full_quickstart_checks_hold).
    assert (acc["int8_ptq"] - acc["w8a16"]) * 100 <= FAST_THRESHOLDS["w8a16_vs_ptq_points"], acc
    assert report["models"]["w8a16"]["variant"] == "w8a16"
    assert report["models"]["w8a16"]["gpu_fully_accelerated"] is False  # int16: CPU only
    for key, m in report["models"].items():
        assert (out / "models" / m["path"].split("/")[-1]).is_file()
        assert m["size_bytes"] > 0 and m["ops"]
        assert not {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "MUL"} & set(m["ops"]), key
    results = report["speed"]["results"]
    cpu = {r["variant_key"]: r for r in results if r["accelerator"] == "cpu"}
    assert set(cpu) == set(EXPORTS)  # w8a16 included, through the same bench code
    assert all(r["latency_ms"]["p50"] > 0 and r["fps"] > 0 for r in results)
    for key, r in cpu.items():  # the bench rows carry the eval step's mIoU
        assert r["miou"] == pytest.approx(acc[key]), key
    md = (out / "report.md").read_text()
    assert "| TFLite int8 (QAT) |" in md and "predictions.png" in md and "miou_vs_fps.png" in md
    assert "| TFLite w8a16 (int16 activations) |" in md and "--fast smoke run" in md
    assert "Thresholds for the **--fast** smoke run" in md
    for name in ("predictions.png", "miou_vs_fps.png"):
        assert cv2.imread(str(out / name)) is not None, name
    # Per-layer error of the PTQ and QAT models (issue 14): plot + JSON, named in the report.
    for key in QUANT_REPORTED:
        q = report["quant_report"][key]
        assert cv2.imread(str(out / q["plot"])) is not None and f"]({q['plot']})" in md
        full = json.loads((out / q["json"]).read_text())
        assert full["images"] == q["images"] == 2 and len(full["layers"]) == q["matched"] > 20
        assert all(e["dtype"] == "int8" for e in full["layers"] if e["op"] == "CONV_2D"), key
        # Measured: PTQ 26.0 dB; QAT 6.2 dB (it is compared with the float model it was
        # fine-tuned from, so its error includes the fine-tuning's weight changes).
        assert q["output"]["snr_db"] > {"int8_ptq": 15, "int8_qat": 3}[key], q["output"]
        assert q["worst"][0]["snr_drop_db"] is not None
    cap = cv2.VideoCapture(str(out / "demo.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) > 0
    # The user sees step progress, not native runtime chatter.
    assert "[9/9] demo" in proc.stdout
    assert "INFO: [" not in proc.stderr and "I0000" not in proc.stderr


@pytest.mark.gpu
def test_fast_quickstart_has_gpu_rows_where_the_gpu_starts(fast_run):
    out, _ = fast_run
    report = json.loads((out / "report.json").read_text())
    gpu = {r["variant_key"]: r for r in report["speed"]["results"] if r["accelerator"] == "gpu"}
    assert set(gpu) == set(GPU_CHECKED), report["speed"].get("errors")
    assert all(r["latency_ms"]["p50"] > 0 for r in gpu.values())
    assert report["checks"]["gpu_full_delegation"] is True, report["check_details"]
    for key in GPU_CHECKED:
        assert report["models"][key]["gpu_fully_accelerated"] is True, key
    md = (out / "report.md").read_text()
    assert "GPU accelerator (LiteRT WebGPU):" in md


def test_checks_name_what_failed():
    good = {"keras_float": 0.85, "int8_ptq": 0.840, "int8_qat": 0.848, "w8a16": 0.8495}
    gpu_ok = {k: {"gpu_fully_accelerated": True} for k in GPU_CHECKED}
    assert all(d["ok"] for d in evaluate_checks(good, gpu_ok, fast=False).values())
    # Full thresholds: each number on the wrong side fails its own check, and only that one.
    cases = [({"keras_float": 0.79}, "float_miou"),
             ({"int8_qat": 0.8440}, "qat_within_float"),
             ({"int8_ptq": 0.849}, "qat_not_below_ptq"),
             ({"w8a16": 0.8384}, "w8a16_not_below_ptq")]
    for change, name in cases:
        c = evaluate_checks({**good, **change}, gpu_ok, fast=False)
        assert [k for k, d in c.items() if d["ok"] is False] == [name], (change, c)
    bad_gpu = dict(gpu_ok, int8_ptq={"gpu_fully_accelerated": False, "gpu_unsupported_ops": ["MUL"]})
    c = evaluate_checks(good, bad_gpu, fast=False)["gpu_full_delegation"]
    assert c["ok"] is False and "int8_ptq" in c["message"] and "MUL" in c["message"]
    # No GPU accelerator here: not checked, not failed.
    c = evaluate_checks(good, {k: {"gpu_fully_accelerated": None} for k in GPU_CHECKED}, False)
    assert c["gpu_full_delegation"]["ok"] is None
    # --fast: its own floor.
    assert evaluate_checks({**good, "keras_float": 0.5}, gpu_ok, fast=True)["float_miou"]["ok"]
    assert not evaluate_checks({**good, "keras_float": 0.5}, gpu_ok, fast=False)["float_miou"]["ok"]


def test_failed_check_gives_a_nonzero_exit_naming_it(capsys):
    from edge_deeplab.app.commands.quickstart import report_checks

    acc = {"keras_float": 0.75, "int8_ptq": 0.74, "int8_qat": 0.745}
    gpu = {k: {"gpu_fully_accelerated": True} for k in GPU_CHECKED}
    details = evaluate_checks(acc, gpu, fast=False)
    report = {"accuracy": acc, "check_details": details,
              "checks": {k: d["ok"] for k, d in details.items()}}
    assert report_checks(report) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err == ["edge-deeplab quickstart: check failed: float_miou: Keras float mIoU 75.00 >= 80.00"]
    assert "keras_float 75.00" in captured.out
    details = evaluate_checks({"keras_float": 0.85, "int8_ptq": 0.85, "int8_qat": 0.85}, gpu, False)
    assert report_checks({"accuracy": acc, "check_details": details,
                          "checks": {k: d["ok"] for k, d in details.items()}}) == 0


def test_cli_exits_nonzero_when_a_check_fails(fast_run, tmp_path):
    """The real command on a copy of the finished --fast run whose stored float mIoU is made to
    fail: every step but the benchmark (rerun with --no-gpu) is resumed from disk, the report is
    rewritten, and the exit names the check."""
    src, _ = fast_run
    out = tmp_path / "qs"
    shutil.copytree(src, out)
    for p in (out / "steps").glob("*.json"):
        p.write_text(p.read_text().replace(str(src), str(out)))
    acc_step = out / "steps" / "accuracy.json"
    acc = json.loads(acc_step.read_text())
    acc["keras_float"]["miou"] = 0.05
    acc_step.write_text(json.dumps(acc))
    (out / "steps" / "bench.json").unlink()  # benchmarked again, under --no-gpu
    proc = subprocess.run([sys.executable, "-m", "edge_deeplab.app.cli", "quickstart", "--out", str(out),
                           "--fast", "--no-gpu"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edge-deeplab quickstart: check failed: float_miou: Keras float mIoU 5.00")
    report = json.loads((out / "report.json").read_text())  # written before the exit
    assert report["checks"]["float_miou"] is False
    assert "FAIL: Keras float mIoU 5.00" in (out / "report.md").read_text()
    accels = {(r["variant_key"], r["accelerator"]) for r in report["speed"]["results"]}
    assert accels == {(k, "cpu") for k in EXPORTS}  # --no-gpu: CPU rows only


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
    from edge_deeplab.app.quickstart.plan import MARKER

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


#: The full quickstart's own limit (s). It needs about 13 CPU-minutes (measured: 728 s user + 42 s
#: system, exit 0), 9-11 min on 2 idle cores; 39 min wall measured on 2 AMD EPYC cores shared at load
#: average 8-13 (it got 32% of a CPU). The subprocess gets this limit and pytest-timeout 5 min more,
#: so a run past it fails with the quickstart's own output, not pytest's stack dump.
FULL_QUICKSTART_LIMIT_S = 3000


@pytest.mark.slow
@pytest.mark.timeout(FULL_QUICKSTART_LIMIT_S + 300)
def test_full_quickstart_checks_hold(tmp_path):
    """The README's main job as users run it (about 10-15 min on 2 cores; .ci/run runs it): exit 0
    means every check held with the full thresholds (float >= 0.80, QAT within 0.5 points of float,
    QAT >= PTQ, w8a16 >= PTQ - 0.15 points, every export but w8a16 fully on the GPU where one
    starts)."""
    out = tmp_path / "quickstart"
    proc = subprocess.run([sys.executable, "-m", "edge_deeplab.app.cli", "quickstart", "--out", str(out)],
                          capture_output=True, text=True, timeout=FULL_QUICKSTART_LIMIT_S)
    report = json.loads((out / "report.json").read_text())
    assert proc.returncode == 0, (failed_checks(report), proc.stderr[-2000:])
    assert report["thresholds"]["float_miou"] == FULL_THRESHOLDS["float_miou"]
    assert report["accuracy"]["keras_float"] >= 0.80
    assert all(v is not False for v in report["checks"].values())
    assert (report["accuracy"]["int8_ptq"] - report["accuracy"]["w8a16"]) * 100 <= \
        FULL_THRESHOLDS["w8a16_vs_ptq_points"]
    assert abs(report["accuracy"]["w8a16"] - report["accuracy"]["keras_float"]) * 100 <= 0.25
    assert report["checks"]["w8a16_not_below_ptq"] is True
    for key in QUANT_REPORTED:
        assert (out / report["quant_report"][key]["plot"]).is_file()
