"""Benchmark reports: Markdown table, JSON schema, plots (real matplotlib Agg rendering), atomic writes."""

from __future__ import annotations

import json

import pytest

from benchmarks.report import plot_report, to_markdown, write_reports


def _row(name, acc, variant, p50, fps, miou=None, **kw):
    r = {"model": f"/m/{name}", "variant": variant, "size_mb": 3.2, "accelerator": acc,
         "runtime": "litert-compiled-model", "runtime_version": "2.3.0", "fully_accelerated": True,
         "unsupported_ops": [], "latency_ms": {"mean": p50 * 1.05, "std": 1.0, "p50": p50, "p90": p50 * 1.2,
                                               "p99": p50 * 1.5},
         "latency_samples_ms": [p50 * f for f in (0.9, 1.0, 1.0, 1.1, 1.3)], "fps": fps, "init_ms": 40.0,
         "first_inference_ms": 90.0, "peak_rss_mb": 180.0,
         "spread": {"cv_pct": 2.5, "range_pct": 4.0, "round_medians_ms": [p50, p50]},
         "e2e_ms": {"decode": 5.0, "resize": 1.0, "normalize": 1.0, "infer": p50, "postprocess": 2.0,
                    "total": p50 + 9, "total_p50": p50 + 9}}
    if miou is not None:
        r["miou"] = miou
    r.update(kw)
    return r


@pytest.fixture
def report():
    return {
        "results": [
            _row("deeplab_512_float32.tflite", "cpu", "float32", 500.0, 2.0, miou=0.71),
            _row("deeplab_512_int8.tflite", "cpu", "int8", 150.0, 6.5, miou=0.70,
                 cross_check={"tool": "litert-benchmark", "median_ms": 120.0, "ours_p50_ms": 150.0, "diff_pct": 25.0,
                              "within_tolerance": False, "explanation": "our timing includes buffer copies"}),
            _row("deeplab_512_float32.tflite", "gpu", "float32", 90.0, 11.0, miou=0.71, fully_accelerated=False,
                 unsupported_ops=["SPACE_TO_BATCH_ND"], agreement_vs_cpu={"argmax_agree_pct": 99.5, "max_abs_diff": 0.01},
                 gpu_adapter="llvmpipe (LLVM 15.0.6, 256 bits), arch=software, adapterType=CPU / Software"),
        ],
        "errors": [{"model": "/m/garbage.tflite", "accelerator": "cpu", "error": "not a valid TFLite model"}],
        "skipped": [{"model": "/m/deeplab_512_int8.tflite", "accelerator": "npu", "error": "no NPU"}],
        "int8_speedup": [{"accelerator": "cpu", "float32": "deeplab_512_float32.tflite",
                          "int8": "deeplab_512_int8.tflite", "float32_fps": 2.0, "int8_fps": 6.5, "speedup": 3.25}],
        "machine": {"cpu": "AMD EPYC", "logical_cpus": 2, "memory_gb": 23.5, "loadavg": [1.0, 1.0, 1.0],
                    "loadavg_end": [1.2, 1.0, 1.0]},
    }


def test_markdown_table_and_sections(report):
    md = to_markdown(report)
    lines = md.splitlines()
    assert lines[0] == ("| model | variant | size (MB) | accelerator | runtime | full delegation | p50 (ms) | FPS "
                        "| mIoU |")
    assert lines[2] == ("| deeplab_512_float32.tflite | float32 | 3.20 | cpu | litert-compiled-model 2.3.0 | yes "
                        "| 500.00 | 2.0 | 0.7100 |")
    assert "| no (SPACE_TO_BATCH_ND) |" in lines[4]
    assert "argmax agreement 99.50%" in md
    assert "+25.0%" in md and "our timing includes buffer copies" in md
    assert "-> 3.25x" in md
    assert "garbage.tflite [cpu]: not a valid TFLite model" in md
    assert "Skipped" in md and "no NPU" in md
    assert "GPU timings here mean nothing" in md  # software rasterizer flagged
    assert "2 logical CPUs" in md


def test_write_reports_json_markdown_plot_atomically(report, tmp_path):
    paths = write_reports(report, tmp_path / "out" / "r.json", tmp_path / "out" / "r.md", tmp_path / "out" / "r.png")
    assert [p.name for p in paths] == ["r.json", "r.md", "r.png"]
    data = json.loads((tmp_path / "out" / "r.json").read_text())
    for r in data["results"]:
        for k in ("model", "accelerator", "runtime", "fully_accelerated", "fps", "init_ms", "peak_rss_mb"):
            assert k in r
        assert set(r["latency_ms"]) >= {"mean", "p50", "p90", "p99"}
        assert "miou" in r
    assert "machine" in data
    png = (tmp_path / "out" / "r.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.json", "r.md", "r.png"]  # no temp leftovers


def test_plot_without_miou_and_without_samples(tmp_path):
    rep = {"results": [{"model": "a.tflite", "accelerator": "gpu", "latency_ms": {"mean": 30.0}, "fps": 33.3,
                        "device": {"model": "Pixel 7", "serial": "A1"}}], "machine": {}}
    p = plot_report(rep, tmp_path / "p.png")
    assert p.read_bytes()[:4] == b"\x89PNG"
    assert "Pixel 7" in to_markdown(rep)
    p2 = plot_report({"results": [], "machine": {}}, tmp_path / "empty.png")
    assert p2.stat().st_size > 0
