"""Benchmark harness on real tiny models through the real LiteRT runtime (no mocks).

Timing values are never asserted (shared 2-core CI); structure, invariants, isolation and error handling are.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import harness
from benchmarks.harness import (
    output_agreement,
    run_benchmarks,
    run_worker,
)
from benchmarks.measure import latency_stats, output_to_classmap, round_spread
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.runtime import TensorInfo
from tests.support.bench_models import bad_models, tiny_models, without_metadata
from tests.support.cli import assert_one_line_error


@pytest.fixture(scope="session")
def models(pytestconfig):
    return tiny_models(pytestconfig)


# ------------------------------------------------------------------------------------------ stats


def test_latency_stats_and_spread():
    s = latency_stats([4.0, 1.0, 3.0, 2.0, 100.0])
    assert s["n"] == 5 and s["min"] == 1.0 and s["max"] == 100.0
    assert s["p50"] == 3.0
    assert s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert s["mean"] == pytest.approx(22.0) and s["fps"] == pytest.approx(1000 / 22.0, rel=1e-3)
    assert latency_stats([])["mean"] is None
    sp = round_spread([10.0, 11.0, 12.0])
    assert sp["range_pct"] == pytest.approx(2 / 11 * 100, rel=1e-3)
    assert sp["cv_pct"] == pytest.approx(np.std([10, 11, 12], ddof=1) / 11 * 100, rel=1e-2)


def test_output_kinds_to_classmap():
    f32 = TensorInfo("y", (1, 2, 2, 3), np.dtype(np.float32))
    logits = np.zeros((1, 2, 2, 3), np.float32)
    logits[0, 0, 0, 2] = 5
    assert output_to_classmap(logits, f32).tolist() == [[2, 0], [0, 0]]
    sig = TensorInfo("y", (1, 2, 2, 1), np.dtype(np.float32))
    probs = np.array([0.9, 0.2, 0.6, 0.4], np.float32).reshape(1, 2, 2, 1)
    assert output_to_classmap(probs, sig).tolist() == [[1, 0], [1, 0]]
    logit1 = np.array([3.0, -2.0, -0.1, 0.2], np.float32).reshape(1, 2, 2, 1)  # values outside [0, 1]
    assert output_to_classmap(logit1, sig).tolist() == [[1, 0], [0, 1]]
    q = TensorInfo("y", (1, 2, 2, 1), np.dtype(np.uint8), 1 / 255, 0)
    assert output_to_classmap(np.array([200, 10, 128, 127], np.uint8).reshape(1, 2, 2, 1), q).tolist() == [[1, 0], [1, 0]]
    cmap = TensorInfo("y", (1, 2, 2), np.dtype(np.int32))
    assert output_to_classmap(np.array([[[1, 4], [0, 2]]], np.int32), cmap).tolist() == [[1, 4], [0, 2]]
    a = np.random.default_rng(0).normal(size=(1, 8, 8, 4)).astype(np.float32)
    same = output_agreement(a, a)
    assert same["argmax_agree_pct"] == 100.0 and same["max_abs_diff"] == 0.0
    assert same["argmax_agree_decidable_pct"] == 100.0
    assert output_agreement(a, -a)["argmax_agree_pct"] < 50
    noisy = output_agreement(a + np.float32(0.01) * np.random.default_rng(1).normal(size=a.shape).astype(np.float32), a)
    assert noisy["rel_max_diff"] < 0.02 and noisy["argmax_agree_decidable_pct"] == 100.0
    assert 0 < noisy["decidable_pct"] <= 100.0


# ------------------------------------------------------------------------------ real runtime runs


def test_run_benchmarks_cpu_float_and_int8_side_by_side(models):
    rep = run_benchmarks([models["float32"], models["int8"]], accelerators="cpu", threads=2, warmup=2, runs=6,
                         rounds=2, e2e_runs=2, cross_check=True)
    assert rep["errors"] == [] and len(rep["results"]) == 2
    f, q = rep["results"]
    assert (f["variant"], q["variant"]) == ("float32", "int8")
    for r in rep["results"]:
        lat = r["latency_ms"]
        assert r["accelerator"] == "cpu" and r["runtime"] == "litert-compiled-model"
        assert r["runtime_version"]
        # XNNPACK claims every op of the float model; the uint8-I/O int8 model keeps its two edge
        # QUANTIZE (uint8 <-> int8) ops on the reference kernels, and LiteRT says so.
        assert r["fully_accelerated"] is (r["variant"] == "float32")
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["fps"] == pytest.approx(1000 / lat["mean"], rel=1e-3)
        assert r["runs"] == 6 and len(r["latency_samples_ms"]) == 6 and r["rounds"] == 2
        # the summary is of the samples it reports (NumPy, not the harness, computes the reference)
        samples = np.array(r["latency_samples_ms"])
        assert (samples > 0).all() and lat["min"] == pytest.approx(samples.min(), abs=1e-3)
        assert lat["max"] == pytest.approx(samples.max(), abs=1e-3)
        assert lat["p50"] == pytest.approx(np.median(samples), abs=1e-3)
        assert lat["mean"] == pytest.approx(samples.mean(), abs=1e-3)
        # two rounds of three samples each, in order: their medians and coefficient of variation
        medians = np.median(samples.reshape(2, 3), axis=1)
        assert r["spread"]["round_medians_ms"] == pytest.approx(medians.tolist(), abs=1e-3)
        assert r["spread"]["cv_pct"] == pytest.approx(
            np.std(medians, ddof=1) / np.mean(medians) * 100, abs=0.01)
        assert r["init_ms"] > 0 and r["first_inference_ms"] > 0
        assert r["peak_rss_mb"] > r["baseline_rss_mb"] > 0
        e = r["e2e_ms"]
        assert e["frame"] == [720, 1280] and e["n"] == 2
        stages = [e[k] for k in ("decode", "resize", "normalize", "infer", "postprocess")]
        # every stage does real work (a 720p JPEG decode, a resize, an inference) and takes time,
        # and the total is timed around all five of them: at least their sum, not much more
        assert all(t > 0 for t in stages), e
        assert sum(stages) - 1e-3 <= e["total"] <= sum(stages) * 1.5 + 1.0, e
        cc = r["cross_check"]
        assert cc["tool"] == "litert-benchmark" and cc["median_ms"] > 0 and "diff_pct" in cc
        assert "--num_threads=2" in cc["command"]
        if not cc["within_tolerance"]:
            assert cc["explanation"]
        assert r["input"]["shape"] == [1, 64, 64, 3]
    assert q["input"]["dtype"] in ("int8", "uint8") and q["input"]["scale"] is not None
    assert q["size_mb"] < f["size_mb"]
    sp = harness.int8_speedup(rep)
    assert len(sp) == 1 and sp[0]["speedup"] == pytest.approx(q["fps"] / f["fps"], rel=1e-2)
    assert rep["machine"]["logical_cpus"] >= 1 and "litert" in rep["machine"]["runtimes"]
    json.dumps(rep)  # the whole report is JSON-serializable


def test_bad_models_each_get_one_error_and_good_one_survives(models, tmp_path, capsys):
    from edge_deeplab.app.cli import main

    bad = bad_models(models["float32"], tmp_path / "bad", models["vector_input"])
    out = tmp_path / "report.json"
    rc = main(["bench", *map(str, bad.values()), str(models["int8"]), "--threads", "2", "--runs", "3",
               "--warmup", "1", "--rounds", "1", "--e2e-runs", "1", "--json", str(out), "--quiet"])
    assert rc != 0
    rep = json.loads(out.read_text())
    assert [Path(r["model"]).name for r in rep["results"]] == [models["int8"].name]
    errs = {Path(e["model"]).stem: e["error"] for e in rep["errors"]}
    assert set(errs) == set(bad)
    assert "not a valid TFLite model" in errs["garbage"]
    assert "empty" in errs["empty"]
    assert "not a valid TFLite model" in errs["truncated"]
    assert "not found" in errs["missing"]
    assert "EdgeDeeplabNoSuchOp" in errs["custom_op"]
    assert "not an image segmentation model" in errs["vector_input"]
    for msg in errs.values():
        assert "\n" not in msg and len(msg) < 300 and "Traceback" not in msg
    err = capsys.readouterr().err
    assert err.count("edge-deeplab bench: error:") == len(bad)


_SEGV_WORKER = """
import faulthandler, io, json, os, sys
text = sys.stdin.read()
if "int8" in json.loads(text)["model"]:
    faulthandler.disable()
    faulthandler._sigsegv()
sys.stdin = io.StringIO(text)
from benchmarks import worker
rc = worker.main()
sys.stdout.flush()
os._exit(rc)
"""


def test_native_crash_costs_only_its_own_row(models, monkeypatch, tmp_path):
    # A real SIGSEGV inside the worker process of the int8 model (a worker command that crashes
    # before measuring it, faulthandler._sigsegv); the float32 row survives.
    script = tmp_path / "segv_worker.py"
    script.write_text(_SEGV_WORKER)
    monkeypatch.setattr(harness, "WORKER_COMMAND", (sys.executable, str(script)))
    rep = run_benchmarks([models["int8"], models["float32"]], threads=2, warmup=1, runs=2, rounds=1, e2e_runs=0)
    assert [Path(r["model"]).name for r in rep["results"]] == [models["float32"].name]
    assert len(rep["errors"]) == 1 and "SIGSEGV" in rep["errors"][0]["error"]
    assert rep["results"][0]["e2e_ms"] is None


def test_normalization_metadata_flags_default_and_missing_accelerator(models, tmp_path):
    foreign = str(without_metadata(models["float32"], tmp_path / "foreign.tflite"))
    spec = {"accelerator": "cpu", "threads": 1, "warmup": 1, "runs": 2, "rounds": 1, "e2e_runs": 0}
    r = run_worker({**spec, "model": foreign, "mean": [0.0, 0.0, 0.0], "std": 255.0})
    assert r["ok"] and r["normalization"] == {"mean": [0.0] * 3, "std": [255.0] * 3, "source": "flags"}
    assert run_worker({**spec, "model": foreign})["normalization"]["source"] == "default"
    ours = run_worker({**spec, "model": str(models["float32"]), "mean": 0.0, "std": 1.0})
    assert ours["normalization"]["source"] == "metadata"  # the model's own metadata wins over flags
    rep = run_benchmarks([models["float32"]], accelerators=["cpu", "npu"], threads=1, warmup=1, runs=2,
                         rounds=1, e2e_runs=0, agreement=False)
    assert len(rep["results"]) == 1  # CPU row kept
    assert [e["accelerator"] for e in rep["errors"]] == ["npu"]  # asked for explicitly: an error
    with pytest.raises(EdgeDeeplabError):
        run_benchmarks([models["float32"]], accelerators="tpu")


def test_miou_through_the_same_runtime(models, tmp_path, pytestconfig):
    """bench scores the mIoU eval scores, through the same runtime (the trained model's bench
    and eval agreement for every variant is in tests/contract)."""
    from edge_deeplab.data import load_dataset
    from edge_deeplab.data.synthetic import generate_synthetic
    from edge_deeplab.evaluation.evaluate import evaluate_tflite

    generate_synthetic(tmp_path / "ds", num_train=1, num_val=2, size=(64, 64))
    rep = run_benchmarks([models["int8"]], threads=2, warmup=1, runs=2, rounds=1, e2e_runs=0,
                         dataset="folder", data_dir=tmp_path / "ds", split="val")
    assert rep["errors"] == []
    r = rep["results"][0]
    ev = evaluate_tflite(models["int8"], load_dataset("folder", tmp_path / "ds", "val"), threads=2)
    assert r["miou"] == pytest.approx(ev["miou"], abs=1e-9)
    assert r["miou_detail"]["num_images"] == ev["num_images"] == 2
    # and bench's mIoU equals a reference that shares no code with it: the LiteRT Interpreter fed
    # the raw pixels (what phone apps feed a uint8 model), scored with a NumPy confusion matrix. On
    # the colour-decided model (wide logit margins): a random net's near-ties flip between
    # Interpreter and CompiledModel kernels.
    from tests.support.data_trees import make_folder_tree
    from tests.support.segmentation_models import LABELS
    from tests.support.tiny import tiny_tflite

    decided = tiny_tflite(pytestconfig, "int8", weights="colour")
    root, _ = make_folder_tree(tmp_path / "colour", np.random.default_rng(3), n=4,
                               num_classes=len(LABELS), exts=(".png",), sizes=((64, 64),),
                               labels=list(LABELS))
    rep = run_benchmarks([decided], threads=2, warmup=1, runs=2, rounds=1, e2e_runs=0,
                         dataset="folder", data_dir=root, split="val")
    assert rep["errors"] == []
    ref = numpy_miou(decided, root, "val")
    assert 0.05 < ref < 1.0 and rep["results"][0]["miou"] == pytest.approx(ref, abs=1e-9)


def numpy_miou(model, root, split) -> float:
    """mIoU of a uint8-input ``model`` on a folder dataset, by hand: PIL reads the PNGs, the LiteRT
    Interpreter runs the raw pixels (the input's quantization must be ``pixel / 127.5 - 1`` to within
    one step), and one confusion matrix over all pixels (ignore 255) gives the IoUs."""
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    it = Interpreter(model_path=str(model))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero = i["quantization"]
    p = np.arange(256.0)
    assert i["dtype"] == np.uint8 and np.abs((p - zero) * scale - (p / 127.5 - 1)).max() <= scale
    k = int(o["shape"][-1])
    cm = np.zeros((k, k), np.int64)
    for name in (Path(root) / f"{split}.txt").read_text().split():
        img = np.asarray(Image.open(Path(root) / "images" / f"{name}.png").convert("RGB"), np.uint8)
        gt = np.asarray(Image.open(Path(root) / "masks" / f"{name}.png")).astype(np.int64)
        it.set_tensor(i["index"], img[None])
        it.invoke()
        pred = it.get_tensor(o["index"])[0].argmax(-1).astype(np.int64)
        keep = gt != 255
        cm += np.bincount(gt[keep] * k + pred[keep], minlength=k * k).reshape(k, k)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    return float(np.mean(np.diag(cm)[union > 0] / union[union > 0]))


#: A physical ceiling on one CPU thread's float32 multiply-adds per second (see the test below).
MAX_MACS_PER_SECOND = 200e9


def test_twice_the_compute_measures_slower_and_rows_name_their_file(pytestconfig, tmp_path):
    """A benchmark that timed the wrong loop (the right model opened, something else timed) would
    give two models of 155 and 306 million multiply-adds the same latency; and each row carries
    the SHA-256 of the file the user named (computed here with hashlib), in the order named."""
    import hashlib
    import shutil

    from tests.support.bench_models import CONV_STACK_BASE_DEPTH, conv_stack_macs, conv_stack_model

    base = shutil.copy(conv_stack_model(pytestconfig, CONV_STACK_BASE_DEPTH), tmp_path / "base.tflite")
    double = shutil.copy(conv_stack_model(pytestconfig, 2 * CONV_STACK_BASE_DEPTH),
                         tmp_path / "double.tflite")
    # alternated three times (copies under other names), so a burst of load on this shared machine
    # hits both models alike
    named = [shutil.copy(p, tmp_path / f"{i}_{Path(p).name}") for i in range(3) for p in (double, base)]
    rep = run_benchmarks(named, threads=1, warmup=3, runs=60, rounds=3, e2e_runs=0)
    assert rep["errors"] == [] and len(rep["results"]) == 6
    for row, path in zip(rep["results"], named):
        assert row["model_sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    d, b = rep["results"][:2]
    assert d["model_sha256"] != b["model_sha256"]
    fastest = {key: min(r["latency_ms"]["min"] for r in rep["results"][j::2])
               for j, key in enumerate(("double", "base"))}
    ratio = fastest["double"] / fastest["base"]
    print(f"conv stacks: base min {fastest['base']:.3f} ms, double min {fastest['double']:.3f} ms, "
          f"ratio {ratio:.2f}")
    # the fastest of 180 runs each is the least load-sensitive figure; 2x the work takes well over 1.3x
    assert ratio > 1.3
    # and a latency is the model's: one thread cannot do more than 200 G multiply-adds per second
    # (an AVX-512 core with two FMA units at 5 GHz does 160 G in float32), so the base model's 155 M
    # take at least 0.78 ms; a loop that timed something else would report microseconds
    assert fastest["base"] >= conv_stack_macs(CONV_STACK_BASE_DEPTH) / MAX_MACS_PER_SECOND * 1e3


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_row_agreement_and_all_skips_npu(trained):
    """GPU (lavapipe here) vs CPU on the same frame of the trained model's float32 export;
    ``--accelerator all`` skips the NPU, which no vendor library provides here."""
    rep = run_benchmarks([trained["exports"]["float32"]], accelerators="all", threads=2, warmup=1,
                         runs=3, rounds=1, e2e_runs=1)
    assert [r["accelerator"] for r in rep["results"]] == ["cpu", "gpu"]
    gpu = rep["results"][1]
    assert gpu["fully_accelerated"] is True and gpu["unsupported_ops"] == []
    ag = gpu["agreement_vs_cpu"]
    print(f"bench frame: GPU vs CPU argmax agreement {ag['argmax_agree_pct']:.3f}%, "
          f"max |diff| {ag['max_abs_diff']:.4g}")
    assert ag["argmax_agree_pct"] >= 99.5 and 0.0 < ag["max_abs_diff"] < 0.5
    assert [s["accelerator"] for s in rep["skipped"]] == ["npu"] and rep["errors"] == []
    assert "NPU" in rep["skipped"][0]["error"]


# ------------------------------------------------------------------ bad input and interruptions (CLI)

REPO = Path(__file__).resolve().parents[2]
FAST = ["--threads", "1", "--runs", "2", "--warmup", "1", "--rounds", "1", "--e2e-runs", "1"]


def _cli(args, cwd, env=None, **kw):
    """``edge-deeplab ARGS`` as a user runs it: the console script, from ``cwd``."""
    import subprocess

    exe = Path(sys.executable).with_name("edge-deeplab")
    full_env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, env=full_env, capture_output=True,
                          text=True, **kw)


def test_relative_paths_are_the_callers_not_the_repositorys(models, tmp_path):
    """``bench rel/x.tflite --frame rel/f.png --data-dir rel/ds`` from another directory measures the
    caller's files, even when the repository holds a different file at the same relative path."""
    import shutil

    import cv2

    from edge_deeplab.data.synthetic import generate_synthetic

    rel = f"bench_trap_{os.getpid()}"
    mine = tmp_path / rel
    mine.mkdir()
    shutil.copy(models["float32"], mine / "x.tflite")
    cv2.imwrite(str(mine / "f.png"), np.full((48, 80, 3), 90, np.uint8))
    generate_synthetic(mine / "ds", num_train=1, num_val=2, size=(64, 64))
    trap = REPO / rel
    trap.mkdir()
    try:
        shutil.copy(models["int8"], trap / "x.tflite")  # another model at the same relative path
        p = _cli(["bench", f"{rel}/x.tflite", "--frame", f"{rel}/f.png", "--dataset", "folder",
                  "--data-dir", f"{rel}/ds", *FAST, "--json", "r.json", "--quiet"], cwd=tmp_path)
    finally:
        shutil.rmtree(trap)
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["errors"] == []
    (row,) = rep["results"]
    assert row["model"] == str(mine / "x.tflite") and row["variant"] == "float32"
    assert row["e2e_ms"]["frame"] == [48, 80]  # our frame, not the synthetic 1280x720 one
    assert row["miou_detail"]["num_images"] == 2 or row["miou_detail"].get("images") == 2


def test_missing_relative_model_is_named_from_the_callers_directory(tmp_path):
    p = _cli(["bench", "nowhere/x.tflite", *FAST, "--quiet"], cwd=tmp_path)
    assert_one_line_error(p, str(tmp_path / "nowhere" / "x.tflite"), code=1)
    bad_frame = _cli(["bench", "x.tflite", "--frame", "none.png", "--quiet"], cwd=tmp_path)
    assert bad_frame.returncode == 2 and str(tmp_path / "none.png") in bad_frame.stderr


@pytest.mark.parametrize("flag,value", [
    ("--runs", "0"), ("--runs", "-5"), ("--rounds", "0"), ("--warmup", "-1"), ("--threads", "0"),
    ("--threads", "-3"), ("--e2e-runs", "-1"), ("--max-images", "0"), ("--min-seconds", "-1"),
    ("--timeout", "0"), ("--timeout", "nan"), ("--std", "0"), ("--mean", "1,2"), ("--runs", "many"),
])
def test_nonsense_numbers_are_refused_at_parse_time(flag, value, capsys, monkeypatch):
    from edge_deeplab.app.cli import main

    monkeypatch.setattr(harness, "run_worker", lambda *a, **k: pytest.fail("a worker started"))
    with pytest.raises(SystemExit) as e:
        main(["bench", "x.tflite", flag, value])
    assert_one_line_error(capsys.readouterr().err, rc=e.value.code, code=2,
                          prefix=f"edge-deeplab bench: error: argument {flag}:")


def test_unwritable_report_paths_fail_before_any_model_runs(models, tmp_path, capsys, monkeypatch):
    from edge_deeplab.app.cli import main

    monkeypatch.setattr(harness, "run_worker", lambda *a, **k: pytest.fail("a worker started"))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    cases = [("--json", tmp_path / "afile" / "sub" / "r.json", "not a directory"),
             ("--markdown", "/proc/edge_deeplab_nowhere/r.md", "not writable"),
             ("--json", tmp_path / "adir", "is a directory"),
             ("--plot", tmp_path / "p.xyz", "unknown image format")]
    if os.geteuid() != 0:  # root writes into a mode-0555 folder anyway
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cases.append(("--json", ro / "r.json", "not writable"))
    for flag, path, why in cases:
        rc = main(["bench", str(models["float32"]), flag, str(path), "--quiet"])
        assert_one_line_error(capsys.readouterr().err, str(path), why, rc=rc, code=2,
                              prefix="edge-deeplab bench: error:")


def test_when_every_model_fails_one_line_each_and_no_table(tmp_path):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(os.urandom(2048))
    (tmp_path / "old.json").write_text('{"an": "earlier report"}')
    p = _cli(["bench", "missing.tflite", "garbage.tflite", "--accelerator", "cpu,gpu", *FAST,
              "--json", "old.json"], cwd=tmp_path)
    assert p.returncode == 1
    assert p.stdout.strip() == ""  # no empty table, no machine line
    errors = [line for line in p.stderr.splitlines() if line.startswith("edge-deeplab bench:")]
    assert len(errors) == 2, p.stderr
    assert errors[0].startswith("edge-deeplab bench: error: missing.tflite [cpu]: model not found: "
                                f"{tmp_path / 'missing.tflite'}")
    assert errors[1].startswith("edge-deeplab bench: error: garbage.tflite [cpu]: not a valid TFLite model")
    assert p.stderr.count("not a valid TFLite model") == 1  # said once, not in progress, table and summary
    assert (tmp_path / "old.json").read_text() == '{"an": "earlier report"}'  # nothing measured, kept


def test_sigterm_leaves_no_temp_dir(models, tmp_path):
    import signal
    import subprocess
    import time

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    exe = Path(sys.executable).with_name("edge-deeplab")
    env = {**os.environ, "TMPDIR": str(tmp), "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    p = subprocess.Popen([str(exe), "bench", str(models["float32"]), "--threads", "1", "--runs", "100000",
                          "--rounds", "1", "--e2e-runs", "0", "--quiet"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not list(tmp.glob("edge_deeplab_bench_*")) and time.time() < deadline and p.poll() is None:
            time.sleep(0.1)
        assert list(tmp.glob("edge_deeplab_bench_*")), "the benchmark never started"
        time.sleep(1.0)  # the worker is running
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err
    assert err.strip().splitlines()[-1] == "edge-deeplab bench: terminated"
    assert list(tmp.iterdir()) == []


def test_two_output_model_says_which_output_it_measured(tmp_path, capsys):
    from edge_deeplab.app.cli import main
    from tests.support.bench_models import two_output_model

    model = two_output_model(tmp_path / "two.tflite")
    rc = main(["bench", str(model), *FAST, "--quiet"])
    assert rc == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(notes) == 1
    assert notes[0].startswith("edge-deeplab bench: note: two.tflite has 2 outputs; measured output 0 ")


def test_make_reference_models_writes_edge_clean_exports(tmp_path, capsys):
    """``python -m benchmarks.make_reference_models`` (the benchmark README's model builder; the
    bench tests themselves now take the suite's cached tiny exports)."""
    from benchmarks.make_reference_models import main as make
    from tests.support.export_models import op_counts

    assert make(["--out", str(tmp_path), "--input-size", "64", "--num-classes", "5",
                 "--alpha", "0.35", "--variants", "float32,int8"]) == 0
    out = capsys.readouterr().out
    for variant in ("float32", "int8"):
        path = tmp_path / f"deeplab_64_{variant}.tflite"
        assert f"{variant}: {path}" in out
        ops = op_counts(path)
        assert not {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "MUL"} & set(ops), ops
    assert op_counts(tmp_path / "deeplab_64_int8.tflite").get("QUANTIZE") == 2  # at the I/O only


def test_bench_feeds_what_the_runtime_feeds_a_model_normalizing_in_its_graph(pytestconfig, tmp_path):
    """A model that normalizes in its graph, known by its JSON sidecar, and a wide frame: the bench
    worker runs the model on the runtime's own input tensor (its output, dumped, is the one
    ``open_runner(...).model_input()`` gives), letterbox padding with the graph's mean included;
    padding with pixel 0 would differ."""
    import cv2

    from converters.calibration import structured_images
    from edge_deeplab.runtime import dequantize, open_runner
    from edge_deeplab.runtime.model_input import ModelInput
    from tests.support.bench_models import sidecar_only
    from tests.support.tiny import tiny_tflite

    path = sidecar_only(tiny_tflite(pytestconfig, "int8", options={"normalize_in_graph": True}),
                        tmp_path / "in_graph.tflite")
    frame = next(structured_images(1, (32, 64), seed=3))
    cv2.imwrite(str(tmp_path / "frame.png"), frame[..., ::-1])  # lossless: the worker reads `frame`
    dump = tmp_path / "out.npy"
    row = run_worker({"model": str(path), "accelerator": "cpu", "threads": 1, "warmup": 1, "runs": 1,
                      "rounds": 1, "e2e_runs": 0, "frame_path": str(tmp_path / "frame.png"),
                      "dump_output": str(dump)})
    assert row["ok"], row
    with open_runner(path, threads=1) as runner:
        mi = runner.model_input()
        x, box = mi(frame)
        assert box == (16, 0, 32, 64) and x[0, 0, 0].tolist() == [128, 128, 128]
        want = dequantize(runner.run(x), runner.output)
        zero_pad = ModelInput(runner.input, mi.mean, mi.std, mi.geometry)(frame)[0]  # pixel-0 padding
        assert not np.array_equal(dequantize(runner.run(zero_pad), runner.output), want)
    assert np.array_equal(np.load(dump), want)
