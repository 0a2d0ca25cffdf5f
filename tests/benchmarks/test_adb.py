"""Android path: parsing real captured ``benchmark_model`` output, and the adb orchestration against a fake
``adb`` executable on PATH that records every call and replays the captured output (no phone needed)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from benchmarks.adb import benchmark_flags, parse_benchmark_model_output, run_devices
from edge_deeplab.core.errors import EdgeDeeplabError

FIX = Path(__file__).resolve().parents[2] / "benchmarks" / "fixtures"


def _read(name):
    return (FIX / name).read_text()


def test_parse_gpu_fully_delegated_android_run():
    r = parse_benchmark_model_output(_read("android_gpu_full_tf43541.txt"))
    assert r["ok"] and r["error"] is None
    assert r["latency_ms"]["mean"] == pytest.approx(119.375)
    assert r["latency_ms"]["std"] == pytest.approx(1.948)
    assert r["latency_ms"]["min"] == pytest.approx(113.737)
    assert r["latency_ms"]["max"] == pytest.approx(124.776)
    assert r["latency_ms"]["p90"] is None and r["latency_ms"]["p99"] is None  # not printed by the tool
    assert r["runs"] == 50  # the timed block, not the warm-up block (count=4)
    assert r["init_ms"] == pytest.approx(870.557)
    assert r["first_inference_ms"] == pytest.approx(130.565)
    assert r["warmup_ms"] == pytest.approx(122.373)
    assert r["fps"] == pytest.approx(1000 / 119.375)
    assert r["model_size_mb"] == pytest.approx(7.07479)
    assert r["fully_accelerated"] is True
    assert r["unsupported_ops"] == []


def test_parse_cpu_run_with_peak_memory():
    r = parse_benchmark_model_output(_read("android_cpu_lp6m_yolov5s.txt"))
    assert r["ok"]
    assert r["latency_ms"]["mean"] == pytest.approx(249.684)
    assert r["runs"] == 50
    assert r["init_ms"] == pytest.approx(16.242)
    assert r["first_inference_ms"] == pytest.approx(360.262)
    assert r["peak_rss_mb"] == pytest.approx(138.809)


def test_parse_logcat_prefixed_partial_nnapi_run():
    r = parse_benchmark_model_output(_read("android_nnapi_partial_logcat_tf56301.txt"))
    assert r["ok"]
    assert r["latency_ms"]["mean"] == pytest.approx(12.1676)
    assert r["runs"] == 75
    assert r["init_ms"] == pytest.approx(126.059)
    assert r["fully_accelerated"] is False
    assert r["delegate_kernels"] == 44


def test_parse_failed_delegate_run_is_an_error():
    r = parse_benchmark_model_output(_read("android_nnapi_failed_lp6m_yolov5s.txt"))
    assert not r["ok"]
    assert r["error"] == "Failed to apply NNAPI delegate."
    assert r["latency_ms"]["mean"] is None and r["fps"] is None


def test_parse_unsupported_gpu_ops_from_logcat():
    r = parse_benchmark_model_output(_read("android_gpu_partial_logcat_tf56301.txt"))
    assert r["unsupported_ops"] == ["UNPACK"]
    assert r["fully_accelerated"] is False
    assert not r["ok"]  # the public excerpt stops before any timing


def test_parse_garbage_text():
    r = parse_benchmark_model_output("segmentation fault\n")
    assert not r["ok"] and r["error"]


def test_flags_match_accelerator():
    f = benchmark_flags("/data/local/tmp/m.tflite", "gpu", 4, 3, 20)
    assert f == ["--graph=/data/local/tmp/m.tflite", "--use_gpu=true", "--use_nnapi=false", "--num_threads=4",
                 "--warmup_runs=3", "--num_runs=20"]
    assert "--use_nnapi=true" in benchmark_flags("/x", "npu", None, 1, 1)
    with pytest.raises(EdgeDeeplabError):
        benchmark_flags("/x", "tpu", None, 1, 1)


FAKE_ADB = r'''#!{python}
"""Fake adb: records argv, answers like a device, replays captured benchmark_model output."""
import json, os, sys
args = sys.argv[1:]
log = os.environ["FAKE_ADB_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(args) + "\n")
fix = os.environ["FAKE_ADB_FIXTURES"]
serial = None
if args[:1] == ["-s"]:
    serial, args = args[1], args[2:]
props = {{"A1": {{"ro.product.model": "Pixel 7", "ro.soc.model": "Tensor G2", "ro.board.platform": "gs201",
                 "ro.build.version.release": "14", "ro.product.manufacturer": "Google"}},
         "B2": {{"ro.product.model": "SM-S918B", "ro.soc.model": "SM8550", "ro.board.platform": "kalama",
                 "ro.build.version.release": "13", "ro.product.manufacturer": "samsung"}}}}
if args[0] == "devices":
    print("List of devices attached\nA1\tdevice\nB2\tdevice\nC3\toffline\n")
elif args[0] == "push":
    if not os.path.exists(args[1]):
        print(f"adb: error: cannot stat '{{args[1]}}': No such file or directory", file=sys.stderr)
        sys.exit(1)
    print(f"{{args[1]}}: 1 file pushed, 0 skipped.")
elif args[0] == "shell":
    cmd = " ".join(args[1:])
    if cmd.startswith("getprop "):
        print(props.get(serial, {{}}).get(cmd.split()[1], ""))
    elif "benchmark_model" in cmd and "--graph=" in cmd:
        name = ("android_gpu_full_tf43541.txt" if "--use_gpu=true" in cmd else
                "android_nnapi_failed_lp6m_yolov5s.txt" if "--use_nnapi=true" in cmd else
                "android_cpu_lp6m_yolov5s.txt")
        sys.stdout.write(open(os.path.join(fix, name)).read())
'''


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    adb = bindir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "adb_calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_FIXTURES", str(FIX))
    monkeypatch.delenv("ADB", raising=False)
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF fake benchmark binary")
    model = tmp_path / "seg.tflite"
    model.write_bytes(b"TFL3 model bytes")
    return {"log": log, "binary": binary, "model": model, "tmp": tmp_path}


def _calls(log):
    return [json.loads(x) for x in log.read_text().splitlines()]


def test_cli_adb_runs_every_device_and_parses(fake_adb, capsys):
    from edge_deeplab.app.cli import main

    out_json = fake_adb["tmp"] / "r.json"
    rc = main(["bench", str(fake_adb["model"]), "--adb", "--benchmark-binary", str(fake_adb["binary"]),
               "--accelerator", "all", "--threads", "4", "--warmup", "2", "--runs", "30", "--quiet",
               "--json", str(out_json), "--markdown", str(fake_adb["tmp"] / "r.md")])
    assert rc == 1  # the NNAPI run failed on both devices (replayed failure) -> non-zero exit
    rep = json.loads(out_json.read_text())
    rows = rep["results"]
    assert {(r["device"]["serial"], r["accelerator"]) for r in rows} == {("A1", "cpu"), ("A1", "gpu"),
                                                                          ("B2", "cpu"), ("B2", "gpu")}
    gpu = next(r for r in rows if r["device"]["serial"] == "B2" and r["accelerator"] == "gpu")
    assert gpu["runtime"] == "benchmark_model"
    assert gpu["latency_ms"]["mean"] == pytest.approx(119.375)
    assert gpu["fps"] == pytest.approx(1000 / 119.375)
    assert gpu["init_ms"] == pytest.approx(870.557)
    assert gpu["fully_accelerated"] is True
    assert gpu["device"]["model"] == "SM-S918B" and gpu["device"]["soc"] == "SM8550"
    assert gpu["device"]["android_version"] == "13"
    cpu = next(r for r in rows if r["device"]["serial"] == "A1" and r["accelerator"] == "cpu")
    assert cpu["peak_rss_mb"] == pytest.approx(138.809) and cpu["fully_accelerated"] is True
    assert {e["serial"] for e in rep["errors"]} == {"A1", "B2"}
    assert all(e["accelerator"] == "npu" and "Failed to apply NNAPI delegate" in e["error"] for e in rep["errors"])
    assert "Pixel 7" in (fake_adb["tmp"] / "r.md").read_text()

    calls = _calls(fake_adb["log"])
    assert ["devices"] in calls  # no --serial: every attached device in the 'device' state (not C3)
    assert not any(c[:2] == ["-s", "C3"] for c in calls)
    for s in ("A1", "B2"):
        assert ["-s", s, "push", str(fake_adb["binary"]), "/data/local/tmp/benchmark_model"] in calls
        assert ["-s", s, "push", str(fake_adb["model"]), "/data/local/tmp/seg.tflite"] in calls
        runs = [c for c in calls if c[:3] == ["-s", s, "shell"] and "--graph=" in c[3]]
        assert len(runs) == 3
        gpu_cmd = next(c[3] for c in runs if "--use_gpu=true" in c[3])
        assert gpu_cmd.split() == ["/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/seg.tflite",
                                   "--use_gpu=true", "--use_nnapi=false", "--num_threads=4", "--warmup_runs=2",
                                   "--num_runs=30"]
        assert any("--use_nnapi=true" in c[3] and "--use_gpu=false" in c[3] for c in runs)
        for prop in ("ro.product.model", "ro.soc.model", "ro.build.version.release"):
            assert ["-s", s, "shell", f"getprop {prop}"] in calls


def test_explicit_serials_and_missing_model(fake_adb):
    res = run_devices(["B2"], [fake_adb["model"], fake_adb["tmp"] / "nope.tflite"], fake_adb["binary"],
                      accelerators=("cpu",), threads=2, warmup=1, runs=5)
    assert len(res) == 1 and res[0]["device"]["model"] == "SM-S918B"
    assert len(res[0]["results"]) == 1
    assert "model not found" in res[0]["errors"][0]["error"]
    assert not any(c[:1] == ["devices"] for c in _calls(fake_adb["log"]))


def test_missing_binary_and_adb(tmp_path, monkeypatch):
    with pytest.raises(EdgeDeeplabError, match="benchmark binary not found"):
        run_devices(["X"], [], tmp_path / "nope")
    binary = tmp_path / "bm"
    binary.write_bytes(b"x")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("ADB", raising=False)
    with pytest.raises(EdgeDeeplabError, match="adb not found"):
        run_devices([], [], binary)
