"""Parent side of the benchmark: latency, FPS, memory, delegation and mIoU of ``.tflite`` models.

Every model x accelerator is measured in its own subprocess (``python -m benchmarks.worker``, whose
body is :func:`benchmarks.measure.worker_main`), so a garbage file, an unknown custom op or a native
crash in a runtime or driver costs that one row a short error and never the other rows. This side
collects the JSON each worker prints, adds the GPU-vs-CPU output agreement, the optional
``litert-benchmark`` cross-check and the machine description, and returns one report dict (see
:func:`run_benchmarks`), which :mod:`benchmarks.report` renders as Markdown/JSON/plots.

Example:
    >>> from benchmarks.harness import int8_speedup
    >>> rows = [{"accelerator": "cpu", "model": "m_float32.tflite", "variant": "float32", "fps": 10.0},
    ...         {"accelerator": "cpu", "model": "m_int8.tflite", "variant": "int8", "fps": 25.0}]
    >>> int8_speedup({"results": rows})[0]["speedup"]
    2.5
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from benchmarks.measure import DEFAULT_FRAME, RESULT_MARK, output_to_classmap
from edge_deeplab.core.contract import variants
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.native_logs import last_meaningful_line
from edge_deeplab.core.sysinfo import machine_info

ACCELERATOR_CHOICES = ("cpu", "gpu", "npu", "all")
#: litert-benchmark vs our CPU median: differences beyond this are explained in the row's notes.
CROSS_CHECK_TOLERANCE_PCT = 15.0
#: The worker process; ``python -m benchmarks.worker`` reads one JSON spec on stdin.
WORKER_COMMAND = (sys.executable, "-m", "benchmarks.worker")

ProgressFn = Callable[[str], None]


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except (ValueError, AttributeError):
        return f"signal {-rc}"


def run_worker(spec: dict, timeout: float = 1800) -> dict:
    """Runs :func:`worker_main` in ``python -m benchmarks.worker`` and returns its row.

    A crash (signal), a timeout or a worker that prints no result becomes ``{"ok": False, "error": ...}``.
    """
    cmd = list(WORKER_COMMAND)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        p = subprocess.run(cmd, input=json.dumps(spec), capture_output=True, text=True, timeout=timeout,
                           env=env, cwd=root)
    except subprocess.TimeoutExpired:
        return {"model": spec["model"], "accelerator": spec.get("accelerator"), "ok": False,
                "error": f"timed out after {timeout:.0f}s", "unavailable": False}
    for line in p.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    if p.returncode < 0:
        why = f"worker crashed ({_signal_name(p.returncode)})"
    else:
        why = f"worker exited with code {p.returncode} without a result"
    last = last_meaningful_line(p.stderr)
    return {"model": spec["model"], "accelerator": spec.get("accelerator"), "ok": False,
            "error": why + (f": {last}" if last else ""), "unavailable": False}


def litert_cross_check(model, threads: Optional[int], warmup: int, runs: int, timeout: float = 1800) -> dict:
    """Runs the bundled ``litert-benchmark`` (CPU, same threads) and returns its numbers.

    Returns:
        ``{"tool", "command", "median_ms", "avg_ms", "std_ms", "min_ms", "max_ms", "init_ms", "runs"}``
        or ``{"tool", "error"}``.
    """
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        cmd = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", f"--model={model}",
               f"--num_threads={int(threads) if threads else 1}", f"--warmup_runs={int(warmup)}",
               f"--num_runs={int(runs)}", f"--result_json={out}"]
        shown = "litert-benchmark " + " ".join(c for c in cmd[3:] if not c.startswith("--result_json"))
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"tool": "litert-benchmark", "command": shown, "error": f"timed out after {timeout:.0f}s"}
        if p.returncode != 0 or not out.is_file():
            return {"tool": "litert-benchmark", "command": shown,
                    "error": last_meaningful_line(p.stderr + p.stdout) or f"exit {p.returncode}"}
        r = json.loads(out.read_text())
    lat = r.get("latency", {})
    return {"tool": "litert-benchmark", "command": shown, "median_ms": lat.get("median_ms"),
            "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "avg_ms": lat.get("avg_ms"), "std_ms": lat.get("std_ms"), "min_ms": lat.get("min_ms"),
            "max_ms": lat.get("max_ms"), "init_ms": lat.get("init_ms"), "runs": lat.get("num_runs"),
            "fully_accelerated": r.get("fully_accelerated")}


def explain_cross_check(row: dict, cc: dict) -> dict:
    """Adds ``diff_pct`` (ours p50 vs theirs median) and, beyond the tolerance, a reason."""
    ours, theirs = (row.get("latency_ms") or {}).get("p50"), cc.get("median_ms")
    if not ours or not theirs:
        return cc
    diff = (ours - theirs) / theirs * 100.0
    cc["ours_p50_ms"] = ours
    cc["diff_pct"] = round(diff, 1)
    cc["within_tolerance"] = abs(diff) <= CROSS_CHECK_TOLERANCE_PCT
    if not cc["within_tolerance"]:
        reasons = []
        io = row.get("io_breakdown") or {}
        if io.get("io_copy_p50_ms") is not None and diff > 0 and io["io_copy_p50_ms"] > 0.05 * ours:
            reasons.append(f"our timing includes writing the input and reading the output buffer, which "
                           f"litert-benchmark leaves out (interleaved pairs: write+run+read p50 "
                           f"{io.get('write_run_read_p50_ms', float('nan')):.2f} ms vs bare run call "
                           f"{io['run_call_only_p50_ms']:.2f} ms, i.e. {io['io_copy_p50_ms']:.2f} ms of copies)")
        spread = (row.get("spread") or {}).get("range_pct")
        if spread is not None and spread > CROSS_CHECK_TOLERANCE_PCT / 2:
            reasons.append(f"this machine is noisy: our round medians differ by {spread:.0f}% among themselves")
        la, lb = row.get("loadavg_1min"), cc.get("loadavg_1min")
        cpus = os.cpu_count() or 1
        if la is not None and lb is not None and max(la, lb) > cpus:
            reasons.append(f"the machine was oversubscribed (1-min load average {la:.1f} during ours, "
                           f"{lb:.1f} during litert-benchmark, on {cpus} CPUs)")
        reasons.append("litert-benchmark feeds uniform random input and runs in a separate process "
                       "(different moment, different load on a shared machine)")
        cc["explanation"] = "; ".join(reasons)
    return cc


def output_agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Agreement of two model outputs for the same input: argmax pixel agreement %, max |diff|."""
    class _Info:
        quantized = False
        scale = None

    ca, cb = output_to_classmap(a, _Info), output_to_classmap(b, _Info)
    same = ca == cb
    res = {"argmax_agree_pct": round(float(same.mean() * 100.0), 3)}
    if a.shape == b.shape and np.issubdtype(a.dtype, np.floating):
        fa, fb = a.astype(np.float64), b.astype(np.float64)
        diff = float(np.max(np.abs(fa - fb)))
        rng = float(fb.max() - fb.min())
        res["max_abs_diff"] = round(diff, 6)
        res["ref_range"] = round(rng, 6)
        res["rel_max_diff"] = round(diff / rng, 6) if rng > 0 else None
        if fb.ndim >= 3 and fb.shape[-1] > 1:
            # Pixels whose reference top-2 margin exceeds the largest difference: only there is a differing
            # argmax a real disagreement (untrained models have near-ties everywhere).
            top2 = np.sort(fb.reshape(-1, fb.shape[-1]), axis=-1)[:, -2:]
            decidable = (top2[:, 1] - top2[:, 0] > diff).reshape(same.shape)
            res["decidable_pct"] = round(float(decidable.mean() * 100.0), 3)
            res["argmax_agree_decidable_pct"] = (round(float(same[decidable].mean() * 100.0), 3)
                                                 if decidable.any() else None)
    return res


def _expand_accelerators(accelerators) -> List[str]:
    if isinstance(accelerators, str):
        accelerators = [a.strip() for a in accelerators.split(",") if a.strip()]
    out: List[str] = []
    for a in accelerators:
        if a not in ACCELERATOR_CHOICES:
            raise EdgeDeeplabError(f"unknown accelerator {a!r}; choose from {', '.join(ACCELERATOR_CHOICES)}")
        for x in (("cpu", "gpu", "npu") if a == "all" else (a,)):
            if x not in out:
                out.append(x)
    return out


def _user_path(path) -> str:
    """``path`` as the caller meant it: relative to the caller's working directory (workers run
    elsewhere), ``~`` expanded."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def _delegate_path(delegate: str) -> str:
    """A delegate given as a path (``./lib.so``, ``dir/lib.so`` or a file here) is made absolute; a
    bare library name that is not a file here is left for the loader's search path."""
    d = os.path.expanduser(str(delegate))
    if os.sep in d or (os.altsep and os.altsep in d) or os.path.exists(d):
        return os.path.abspath(d)
    return d


def run_benchmarks(models: Sequence, *, accelerators=("cpu",), threads: Optional[int] = None, warmup: int = 5,
                   runs: int = 50, min_seconds: float = 0.0, rounds: int = 3, dataset: Optional[str] = None,
                   data_dir=None, split: str = "val", max_images: Optional[int] = None, runtime: str = "auto",
                   delegate: Optional[str] = None, mean=None, std=None, e2e_runs: int = 10, frame=None,
                   frame_size=DEFAULT_FRAME, cross_check: bool = False, agreement: bool = True,
                   timeout: float = 1800, progress: Optional[ProgressFn] = None,
                   gpu_precision: str = "fp16") -> dict:
    """Benchmarks every model on every accelerator, each in an isolated worker process.

    Args:
        models: ``.tflite`` paths (bad ones become per-model errors, not exceptions). Relative paths
            (these, ``data_dir``, ``frame``, ``delegate``) are relative to the caller's working
            directory, and are reported absolute.
        accelerators: any of ``cpu``, ``gpu``, ``npu`` or ``all`` (list or comma string). With ``all``,
            accelerators that cannot start here are recorded under ``skipped``, not as errors.
        threads: CPU threads (``None``: the runtime's default).
        warmup: untimed runs (the first one is reported as ``first_inference_ms``).
        runs: timed runs in total, split over ``rounds`` rounds.
        min_seconds: minimum total timed duration (split over the rounds as well).
        rounds: repetitions of the timed block; their medians give the run-to-run spread.
        dataset, data_dir, split, max_images: score mIoU on this dataset (see
            :func:`edge_deeplab.data.load_dataset`), through the same runtime and accelerator.
        runtime: ``auto``, ``litert``, ``interpreter`` or ``tflite_runtime``.
        delegate: external delegate ``.so`` (Interpreter runtimes).
        mean, std: input normalization when the model has no metadata (default 127.5/127.5).
        e2e_runs: end-to-end frames timed (0 disables); ``frame``: an image file for them, else a
            synthetic ``frame_size`` scene.
        cross_check: also run ``litert-benchmark`` on CPU rows and compare.
        agreement: compare each accelerator's output with the CPU's on the same frame.
        timeout: seconds per worker.
        progress: callable receiving one-line status messages.
        gpu_precision: ``fp16`` (default, as phones run) or ``fp32`` for GPU rows (see
            :data:`edge_deeplab.runtime.GPU_PRECISIONS`).

    Returns:
        ``{"results": [...], "errors": [...], "skipped": [...], "machine": {...}, "settings": {...}}``.

    Example:
        >>> report = run_benchmarks(["a.tflite", "b.tflite"], threads=2, runs=30)  # doctest: +SKIP
        >>> [r["fps"] for r in report["results"]]                                   # doctest: +SKIP
    """
    accs = _expand_accelerators(accelerators)
    # User paths are relative to the caller's directory; workers run from the package root, so
    # resolve them here, before any worker starts.
    models = [_user_path(m) for m in models]
    if data_dir is not None:
        data_dir = _user_path(data_dir)
        if dataset and str(dataset).lower() != "synthetic" and not os.path.isdir(data_dir):
            raise EdgeDeeplabError(f"data directory not found: {data_dir}")
    if frame is not None:
        frame = _user_path(frame)
        if not os.path.isfile(frame):
            raise EdgeDeeplabError(f"frame image not found: {frame}")
    if delegate:
        delegate = _delegate_path(delegate)
    if delegate:
        # The delegate row runs beside a plain-CPU row of the same Interpreter runtime (its reference).
        if runtime in ("auto", "litert"):
            runtime = "interpreter"
        accs = ["cpu", "delegate"]
    explicit_all = (accelerators == "all") or (not isinstance(accelerators, str) and "all" in accelerators)
    say = progress or (lambda msg: None)
    report = {"results": [], "errors": [], "skipped": [], "machine": machine_info(),
              "settings": {"accelerators": accs, "threads": threads, "warmup": warmup, "runs": runs,
                           "min_seconds": min_seconds, "rounds": rounds, "runtime": runtime, "delegate": delegate,
                           "e2e_runs": e2e_runs, "dataset": dataset, "split": split if dataset else None,
                           "max_images": max_images, "cross_check": cross_check,
                           "gpu_precision": gpu_precision}}
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="edge_deeplab_bench_") as tmp:
        for i, model in enumerate(models):
            model = str(model)
            dumps: Dict[str, str] = {}
            rows: Dict[str, dict] = {}
            for acc in accs:
                say(f"[{i + 1}/{len(models)}] {Path(model).name} on {acc} ...")
                dump = os.path.join(tmp, f"{i}_{acc}.npy") if agreement else None
                spec = {"model": model, "accelerator": acc, "threads": threads, "warmup": warmup, "runs": runs,
                        "min_seconds": min_seconds, "rounds": rounds, "runtime": runtime, "delegate": delegate,
                        "mean": mean, "std": std, "e2e_runs": e2e_runs, "frame_path": str(frame) if frame else None,
                        "frame_size": list(frame_size), "dump_output": dump, "io_breakdown": cross_check,
                        "gpu_precision": gpu_precision,
                        "dataset": ({"name": dataset, "data_dir": str(data_dir) if data_dir else None,
                                     "split": split, "max_images": max_images} if dataset else None)}
                res = run_worker(spec, timeout=timeout)
                res.setdefault("model", model)
                res.setdefault("accelerator", acc)
                if not res.get("ok"):
                    entry = {"model": model, "accelerator": acc, "error": res.get("error", "unknown error")}
                    if res.get("unavailable") and explicit_all and acc != "cpu":
                        report["skipped"].append(entry)
                        say(f"    skipped: {entry['error']}")
                    else:
                        report["errors"].append(entry)
                        say("    failed (the error is listed at the end)")
                    if acc == "cpu" and not res.get("unavailable"):
                        # the model itself is bad: the other accelerators would fail the same way
                        for other in accs[1:]:
                            report["errors"].append({"model": model, "accelerator": other,
                                                     "error": f"not run: {entry['error']}"})
                        break
                    continue
                res.pop("ok", None)
                if res.get("miou_error"):
                    report["errors"].append({"model": model, "accelerator": acc,
                                             "error": f"mIoU not computed: {res['miou_error']}"})
                if cross_check and acc == "cpu":
                    say("    cross-check: litert-benchmark ...")
                    cc = litert_cross_check(model, threads, warmup, res.get("runs") or runs, timeout=timeout)
                    res["cross_check"] = explain_cross_check(res, cc)
                rows[acc] = res
                if dump and os.path.exists(dump):
                    dumps[acc] = dump
                lat = res["latency_ms"]
                say(f"    p50 {lat['p50']:.2f} ms, {res['fps']:.2f} FPS ({res['runtime']} {res['runtime_version']}, "
                    f"fully accelerated: {res['fully_accelerated']})")
            if "cpu" in dumps:
                ref = np.load(dumps["cpu"])
                for acc, p in dumps.items():
                    if acc != "cpu":
                        try:
                            rows[acc]["agreement_vs_cpu"] = output_agreement(np.load(p), ref)
                        except Exception as e:  # noqa: BLE001 - never lose a row over the comparison
                            rows[acc]["agreement_vs_cpu"] = {"error": str(e)}
            report["results"].extend(rows[a] for a in accs if a in rows)
    report["machine"]["loadavg_end"] = machine_info().get("loadavg")
    report["seconds"] = round(time.time() - t_start, 1)
    return report


def int8_speedup(report: dict, threads: Optional[int] = None) -> List[dict]:
    """Pairs ``float32`` rows with the int8-activation rows of the same accelerator (every variant
    of the table of variants with ``activations == "int8"``: ``int8``, ``qat-int8``, and ``uint8``,
    an alias) and reports the FPS ratio.

    Pairing: rows whose file names differ only by the variant token (a variant name or alias, or
    ``fp32``/``quant``), else, where an accelerator has a single float32 row, every int8 row with
    its input shape.
    """
    tokens = {n for v in variants.TABLE for n in (v.name, *v.aliases)} | {"fp32", "quantized", "quant"}
    tokens = sorted(tokens, key=len, reverse=True)  # "qat-int8" before "int8"
    token_re = re.compile("|".join(re.escape(t) for t in tokens))

    def key(name):
        return token_re.sub("*", name.lower())

    def activations(row):
        v = variants.find(str(row.get("variant")))
        return v.activations if v else None

    out = []
    by_acc: Dict[str, List[dict]] = {}
    for r in report.get("results", []):
        by_acc.setdefault(r["accelerator"], []).append(r)
    for acc, rows in by_acc.items():
        floats = [r for r in rows if r.get("variant") == "float32"]
        ints = [r for r in rows if activations(r) == "int8"]
        for f in floats:
            match = [q for q in ints if key(Path(q["model"]).name) == key(Path(f["model"]).name)]
            if not match and len(floats) == 1:
                match = [q for q in ints if (f.get("input") or {}).get("shape")
                         == (q.get("input") or {}).get("shape")]
            for q in match:
                lf, lq = f.get("latency_ms") or {}, q.get("latency_ms") or {}

                def ratio(a, b):
                    return round(a / b, 3) if a and b else None

                out.append({"accelerator": acc, "float32": Path(f["model"]).name, "int8": Path(q["model"]).name,
                            "float32_fps": f["fps"], "int8_fps": q["fps"],
                            "speedup": ratio(q["fps"], f["fps"]),  # FPS = 1000 / mean latency
                            "speedup_p50": ratio(lf.get("p50"), lq.get("p50")),
                            "speedup_min": ratio(lf.get("min"), lq.get("min"))})
    return out
