"""Benchmark harness: latency, FPS, memory, delegation and mIoU of ``.tflite`` segmentation models.

Every model x accelerator is measured in its own subprocess (``python -m benchmarks.worker``), so a
garbage file, an unknown custom op or a native crash in a runtime or driver costs that one row a
short error and never the other rows. The parent collects the JSON each worker prints, adds the
GPU-vs-CPU output agreement, the optional ``litert-benchmark`` cross-check and the machine
description, and returns one report dict (see :func:`run_benchmarks`), which :mod:`benchmarks.report`
renders as Markdown/JSON/plots.

What is measured, per model x accelerator (all times in ms):

* ``init_ms``: :func:`edge_deeplab.runtime.open_runner` (load + compile; for GPU the LiteRT accelerator
  first compiles GPU-only and, if some op is refused, again with CPU fallback: both count);
* ``first_inference_ms``: the first ``run`` (GPU shader compilation happens here);
* ``latency_ms``: model-only latency (input tensor already prepared) from the write of the input
  buffer to the output being readable (:meth:`Runner.run` reads the output back, which is the only
  honest stop point on GPU where ``run_by_index`` returns early): ``mean std min max p50 p90 p99``;
  ``fps = 1000 / mean``;
* ``rounds``: the timed block is repeated ``rounds`` times; ``spread`` gives the round medians, their
  coefficient of variation and ``(max-min)/median`` so two numbers can be compared honestly;
* ``e2e_ms``: end-to-end on a JPEG frame: decode, resize, normalize(+quantize), infer, postprocess
  (argmax at model resolution then nearest upsample to the frame size, as phone apps do; 1-channel
  outputs are thresholded), each stage separately plus the total;
* ``peak_rss_mb``: the worker's peak resident memory (``VmHWM``) after the timed runs, and
  ``baseline_rss_mb`` before the model was opened (Python + numpy + runtime import);
* ``fully_accelerated`` / ``unsupported_ops`` from the runtime;
* ``agreement_vs_cpu`` (non-CPU rows): % of pixels whose argmax equals the CPU's on the same frame;
* ``miou`` when a dataset is given (through the same runtime and accelerator, via
  :func:`edge_deeplab.evaluate.evaluate_tflite`);
* ``cross_check`` (CPU rows, ``cross_check=True``): ``litert-benchmark`` on the same model/threads.

Example:
    >>> from benchmarks.bench_lib import latency_stats
    >>> s = latency_stats([10.0, 11.0, 12.0, 13.0])
    >>> s["p50"], round(s["fps"], 2)
    (11.5, 86.96)
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from edge_deeplab.errors import DelegateUnavailableError, EdgeDeeplabError

ACCELERATOR_CHOICES = ("cpu", "gpu", "npu", "all")
RESULT_MARK = "@@EDGE_DEEPLAB_BENCH@@ "
#: litert-benchmark vs our CPU median: differences beyond this are explained in the row's notes.
CROSS_CHECK_TOLERANCE_PCT = 15.0
DEFAULT_FRAME = (720, 1280)

ProgressFn = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------

def latency_stats(samples_ms: Sequence[float]) -> dict:
    """Summary of latency samples: ``mean std min max p50 p90 p99`` (ms), ``fps`` and ``n``.

    Percentiles use linear interpolation (numpy's default); ``fps`` is ``1000 / mean``.
    """
    a = np.asarray(list(samples_ms), dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "p50": None, "p90": None,
                "p99": None, "fps": None}
    mean = float(a.mean())
    return {"n": int(a.size), "mean": round(mean, 4), "std": round(float(a.std(ddof=1)) if a.size > 1 else 0.0, 4),
            "min": round(float(a.min()), 4), "max": round(float(a.max()), 4),
            "p50": round(float(np.percentile(a, 50)), 4), "p90": round(float(np.percentile(a, 90)), 4),
            "p99": round(float(np.percentile(a, 99)), 4), "fps": round(1000.0 / mean, 3) if mean > 0 else None}


def round_spread(round_medians: Sequence[float]) -> dict:
    """Run-to-run spread of per-round medians.

    Returns:
        ``{"round_medians_ms", "cv_pct", "range_pct", "min", "max"}``; ``cv_pct`` is the coefficient of
        variation (std/mean) and ``range_pct`` is ``(max - min) / median`` of the round medians, in %.
    """
    a = np.asarray(list(round_medians), dtype=np.float64)
    if a.size == 0:
        return {"round_medians_ms": [], "cv_pct": None, "range_pct": None, "min": None, "max": None}
    cv = float(a.std(ddof=1) / a.mean() * 100) if a.size > 1 and a.mean() > 0 else 0.0
    rng = float((a.max() - a.min()) / np.median(a) * 100) if np.median(a) > 0 else 0.0
    return {"round_medians_ms": [round(float(x), 4) for x in a], "cv_pct": round(cv, 2),
            "range_pct": round(rng, 2), "min": round(float(a.min()), 4), "max": round(float(a.max()), 4)}


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------

def _proc_status_mb(key: str) -> Optional[float]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``, else ``ru_maxrss``)."""
    v = _proc_status_mb("VmHWM")
    if v is not None:
        return round(v, 2)
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0, 2)


def current_rss_mb() -> Optional[float]:
    v = _proc_status_mb("VmRSS")
    return round(v, 2) if v is not None else None


# --------------------------------------------------------------------------------------------
# Pre/post-processing (any segmentation .tflite)
# --------------------------------------------------------------------------------------------

def synthetic_frame(size=DEFAULT_FRAME, seed: int = 0) -> np.ndarray:
    """A deterministic RGB test frame (a procedural scene when available, else smooth noise)."""
    h, w = size
    try:
        from edge_deeplab.data.synthetic import render_scene

        return render_scene(np.random.default_rng(seed), (h, w))[0]
    except Exception:  # noqa: BLE001 - the synthetic renderer is optional here
        import cv2

        rng = np.random.default_rng(seed)
        small = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def encode_jpeg(image_rgb: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image_rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise EdgeDeeplabError("could not encode the benchmark frame as JPEG")
    return buf.tobytes()


def resolve_normalization(runner, mean=None, std=None):
    """``(mean, std, source)``: model metadata when present, else the flags, else MobileNet's 127.5."""
    meta = runner.metadata or {}
    if meta.get("normalize_in_graph") or meta.get("normalization"):
        m, s = runner.normalization()
        return np.asarray(m, np.float32), np.asarray(s, np.float32), "metadata"
    if mean is not None or std is not None:
        m = np.broadcast_to(np.asarray(mean if mean is not None else 127.5, np.float32), (3,)).copy()
        s = np.broadcast_to(np.asarray(std if std is not None else 127.5, np.float32), (3,)).copy()
        return m, s, "flags"
    m, s = runner.normalization()
    return np.asarray(m, np.float32), np.asarray(s, np.float32), "default"


def make_input(image_rgb: np.ndarray, info, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 RGB image at the model's input size -> the input tensor (batch 1) in the input's dtype.

    Float inputs get ``(x - mean) / std``; quantized integer inputs get that, quantized with the
    tensor's scale/zero-point; integer inputs without quantization get raw pixels.
    """
    from edge_deeplab.runtime import quantize

    img = image_rgb
    if info.shape[-1] == 1 and img.ndim == 3 and img.shape[-1] == 3:
        img = (img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        mean, std = mean[:1], std[:1]
    dt = np.dtype(info.dtype)
    if np.issubdtype(dt, np.integer) and not info.quantized:
        return np.ascontiguousarray(img[None].astype(dt))
    x = (img.astype(np.float32) - mean) / std
    return np.ascontiguousarray(quantize(x[None], info))


def output_to_classmap(y: np.ndarray, info) -> np.ndarray:
    """Raw output tensor -> ``(h, w)`` int class map at model resolution.

    Logits/probabilities: argmax over channels (on the raw quantized values when per-tensor
    quantized: dequantization is monotonic). 1 channel: sigmoid probability > 0.5 (or logit > 0
    when values leave [0, 1]). Integer class maps pass through.
    """
    from edge_deeplab.runtime import dequantize

    a = y[0] if y.ndim >= 3 and y.shape[0] == 1 else y
    if a.ndim == 2:
        return a.astype(np.int32)
    if a.shape[-1] == 1:
        f = dequantize(a, info)[..., 0] if info.quantized else a[..., 0]
        if np.issubdtype(f.dtype, np.integer) and not info.quantized:
            return f.astype(np.int32)
        f = f.astype(np.float32)
        thr = 0.5 if (f.min() >= 0.0 and f.max() <= 1.0) else 0.0
        return (f > thr).astype(np.int32)
    return np.argmax(a, axis=-1).astype(np.int32)


# --------------------------------------------------------------------------------------------
# Model inspection
# --------------------------------------------------------------------------------------------

def detect_variant(path, metadata: Optional[dict] = None) -> str:
    """``float32``, ``float16``, ``dynamic-range``, ``int8`` or ``uint8`` from the tensor types.

    Metadata written by our exporter (``quantization`` / ``variant``) wins when present.
    """
    meta = metadata or {}
    for key in ("variant", "quantization"):
        v = meta.get(key)
        if isinstance(v, str) and v:
            return v
        if isinstance(v, dict) and isinstance(v.get("mode") or v.get("type"), str):
            return v.get("mode") or v.get("type")
    try:
        from edge_deeplab.runtime import capture_native_stderr

        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            from tflite_runtime.interpreter import Interpreter  # type: ignore
        with capture_native_stderr():
            details = Interpreter(model_path=str(path)).get_tensor_details()
    except Exception:  # noqa: BLE001 - best effort
        return "unknown"
    kinds: Dict[str, int] = {}
    for d in details:
        kinds[np.dtype(d["dtype"]).name] = kinds.get(np.dtype(d["dtype"]).name, 0) + 1
    n = max(1, len(details))
    i8, u8, f16 = kinds.get("int8", 0), kinds.get("uint8", 0), kinds.get("float16", 0)
    if f16:
        return "float16"
    if (i8 + u8) / n > 0.5:
        return "int8" if i8 >= u8 else "uint8"
    if i8 + u8:
        return "dynamic-range"
    return "float32"


# --------------------------------------------------------------------------------------------
# The in-worker measurement
# --------------------------------------------------------------------------------------------

def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _fault_injection(path: str) -> None:
    """Test hook: ``EDGE_DEEPLAB_BENCH_FAULT=segv:<substring>`` makes the worker segfault (a real SIGSEGV,
    via ``faulthandler._sigsegv``) when the model path contains the substring. Used by the tests to
    prove a native crash only costs its own row."""
    spec = os.environ.get("EDGE_DEEPLAB_BENCH_FAULT", "")
    if spec.startswith("segv:") and spec[5:] and spec[5:] in str(path):
        import faulthandler

        faulthandler.disable()
        faulthandler._sigsegv()


def measure_model(spec: dict) -> dict:
    """Benchmarks one model on one accelerator in this process (the worker's body).

    Args:
        spec: ``model``, ``accelerator``, ``threads``, ``warmup``, ``runs``, ``min_seconds``, ``rounds``,
            ``runtime``, ``delegate``, ``mean``, ``std``, ``e2e_runs``, ``frame_size``, ``frame_path``,
            ``dump_output`` (``.npy`` path for the agreement check), ``dataset`` (``{"name",
            "data_dir", "split", "max_images"}`` or None), ``io_breakdown`` (bool).

    Returns:
        The result row (``ok`` True) or ``{"ok": False, "error": ..., "unavailable": bool}``.
    """
    from edge_deeplab.runtime import open_runner

    path = spec["model"]
    acc = spec.get("accelerator", "cpu")
    row: dict = {"model": str(path), "model_name": Path(path).name, "accelerator": acc, "ok": False}
    baseline = current_rss_mb()
    _fault_injection(path)
    from edge_deeplab.runtime import capture_native_stderr, native_error_line

    t0 = time.perf_counter()
    err = None
    with capture_native_stderr() as cap:
        try:
            runner = open_runner(path, accelerator="cpu" if acc == "delegate" else acc,
                                 threads=spec.get("threads"), runtime=spec.get("runtime") or "auto",
                                 delegate=spec.get("delegate") if acc == "delegate" else None)
        except DelegateUnavailableError as e:
            return {**row, "error": str(e), "unavailable": True}
        except EdgeDeeplabError as e:
            return {**row, "error": str(e), "unavailable": False}
        except (RuntimeError, ValueError, OSError) as e:  # the runtime raised past its own checks
            err = e
    if err is not None:
        return {**row, "error": f"{Path(path).name}: {native_error_line(cap.text, err)}", "unavailable": False}
    init_ms = _ms(t0)
    try:
        runner.check_segmentation_io()
        return _measure_open(runner, spec, row, init_ms, baseline)
    except EdgeDeeplabError as e:
        return {**row, "error": str(e), "unavailable": False}
    finally:
        try:
            runner.close()
        except Exception:  # noqa: BLE001
            pass


def _measure_open(runner, spec: dict, row: dict, init_ms: float, baseline) -> dict:
    import cv2

    from edge_deeplab.runtime import capture_native_stderr, dequantize, native_error_line

    path = spec["model"]
    info_in, info_out = runner.input, runner.output
    h, w = int(info_in.shape[1]), int(info_in.shape[2])
    mean, std, norm_src = resolve_normalization(runner, spec.get("mean"), spec.get("std"))
    if spec.get("frame_path"):
        from edge_deeplab.data import read_image

        frame = read_image(spec["frame_path"])
    else:
        frame = synthetic_frame(tuple(spec.get("frame_size") or DEFAULT_FRAME))
    jpeg = encode_jpeg(frame)
    x = make_input(cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR), info_in, mean, std)

    warmup = max(1, int(spec.get("warmup", 5)))
    runs = max(1, int(spec.get("runs", 50)))
    rounds = max(1, int(spec.get("rounds", 3)))
    min_seconds = float(spec.get("min_seconds", 0.0) or 0.0)
    per_round_runs = max(1, math.ceil(runs / rounds))
    per_round_secs = min_seconds / rounds

    err = None
    with capture_native_stderr() as cap0:
        t = time.perf_counter()
        try:
            y = runner.run(x)
        except (RuntimeError, ValueError) as e:
            err = e
        first_ms = _ms(t)
    if err is not None:
        raise EdgeDeeplabError(f"{Path(path).name}: inference failed: {native_error_line(cap0.text, err)}")
    with capture_native_stderr() as cap:
        for _ in range(warmup - 1):
            runner.run(x)
        samples: List[float] = []
        medians: List[float] = []
        for _ in range(rounds):
            rs: List[float] = []
            start = time.perf_counter()
            while len(rs) < per_round_runs or (time.perf_counter() - start) < per_round_secs:
                t = time.perf_counter()
                runner.run(x)
                rs.append(_ms(t))
            samples.extend(rs)
            medians.append(float(np.median(rs)))
        peak = peak_rss_mb()

        # Optional breakdown of the model-only time on CompiledModel CPU: the bare run_by_index call
        # (what litert-benchmark times) vs our write + run + read.
        io = None
        model = getattr(runner, "_model", None)
        if spec.get("io_breakdown") and model is not None and runner.accelerator == "cpu":
            # Interleaved pairs, so both sides see the same machine load.
            call, full = [], []
            for _ in range(min(len(samples), max(5, per_round_runs))):
                t = time.perf_counter()
                model.run_by_index(0, runner._in, runner._out)
                call.append(_ms(t))
                t = time.perf_counter()
                runner.run(x)
                full.append(_ms(t))
            io = {"run_call_only_p50_ms": round(float(np.median(call)), 4),
                  "write_run_read_p50_ms": round(float(np.median(full)), 4),
                  "io_copy_p50_ms": round(float(np.median(full)) - float(np.median(call)), 4)}

        # End-to-end on a JPEG frame.
        e2e_runs = int(spec.get("e2e_runs", 10))
        stages = {k: [] for k in ("decode", "resize", "normalize", "infer", "postprocess", "total")}
        classmap_full = None
        for _ in range(e2e_runs):
            t_all = time.perf_counter()
            t = time.perf_counter()
            bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            stages["decode"].append(_ms(t))
            t = time.perf_counter()
            small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
            stages["resize"].append(_ms(t))
            t = time.perf_counter()
            xi = make_input(small, info_in, mean, std)
            stages["normalize"].append(_ms(t))
            t = time.perf_counter()
            yi = runner.run(xi)
            stages["infer"].append(_ms(t))
            t = time.perf_counter()
            cm = output_to_classmap(yi, info_out)
            classmap_full = cv2.resize(cm.astype(np.uint8 if cm.max() < 256 else np.uint16),
                                       (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
            stages["postprocess"].append(_ms(t))
            stages["total"].append(_ms(t_all))
    if spec.get("dump_output"):
        out = y if np.issubdtype(np.dtype(info_out.dtype), np.integer) and not info_out.quantized \
            else dequantize(y, info_out)
        np.save(spec["dump_output"], out)

    lat = latency_stats(samples)
    e2e = None
    if e2e_runs > 0:
        e2e = {k: round(float(np.mean(v)), 4) for k, v in stages.items()}
        tot = latency_stats(stages["total"])
        e2e.update({"total_p50": tot["p50"], "fps": tot["fps"], "n": e2e_runs,
                    "frame": [int(frame.shape[0]), int(frame.shape[1])],
                    "postprocess_kind": "argmax@model-res + nearest upsample"
                    if (len(info_out.shape) == 4 and info_out.shape[-1] > 1) else "threshold/classmap + nearest upsample"})
    variant = detect_variant(path, runner.metadata)
    row.update({
        "ok": True,
        "runtime": runner.runtime_name,
        "runtime_version": runner.runtime_version,
        "delegate": spec.get("delegate") if row["accelerator"] == "delegate" else None,
        "threads": spec.get("threads"),
        "variant": variant,
        "size_mb": round(Path(path).stat().st_size / 1e6, 3),
        "input": info_in.to_dict(),
        "output": info_out.to_dict(),
        "normalization": {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "source": norm_src},
        "fully_accelerated": runner.fully_accelerated,
        "unsupported_ops": list(runner.unsupported_ops),
        "init_ms": round(init_ms, 3),
        "first_inference_ms": round(first_ms, 3),
        "warmup_runs": warmup,
        "latency_ms": {k: lat[k] for k in ("mean", "std", "min", "max", "p50", "p90", "p99")},
        "latency_samples_ms": [round(s, 4) for s in samples],
        "runs": lat["n"],
        "rounds": rounds,
        "spread": round_spread(medians),
        "fps": lat["fps"],
        "e2e_ms": e2e,
        "peak_rss_mb": peak,
        "baseline_rss_mb": baseline,
        "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    })
    if io:
        row["io_breakdown"] = io
    if model is not None and runner.accelerator == "cpu":
        # The runtime reports CPU as fully accelerated by definition; LiteRT itself says whether every op
        # went to XNNPACK (False: some ops run on the reference TFLite kernels, which matters for speed).
        try:
            row["xnnpack_fully_delegated"] = bool(model.is_fully_accelerated())
        except Exception:  # noqa: BLE001
            pass
    adapter = re.search(r"Selected adapter: ([^\n]+)", runner.log + cap.text)
    if adapter:
        row["gpu_adapter"] = adapter.group(1).strip()
    return row


def measure_miou(spec: dict) -> dict:
    """mIoU of ``spec["model"]`` on ``spec["dataset"]`` through the same runtime/accelerator."""
    from edge_deeplab.data import load_dataset
    from edge_deeplab.evaluate import evaluate_tflite

    d = spec["dataset"]
    ds = load_dataset(d["name"], d.get("data_dir"), d.get("split") or "val")
    if d.get("max_images"):
        ds = ds.subset(int(d["max_images"]))
    r = evaluate_tflite(spec["model"], ds, accelerator=spec.get("accelerator", "cpu"), threads=spec.get("threads"),
                        runtime=spec.get("runtime") or "auto", progress=lambda done, total: None)
    keep = {k: r.get(k) for k in ("miou", "pixel_accuracy", "dataset", "split", "images", "num_images", "skipped",
                                  "seconds")}
    keep["per_class_iou"] = r.get("per_class_iou") or r.get("iou")
    return {k: v for k, v in keep.items() if v is not None}


def worker_main(spec: dict) -> dict:
    """Timing, then mIoU (if asked) once the timed peak memory has been taken."""
    res = measure_model(spec)
    if res.get("ok") and spec.get("dataset"):
        try:
            m = measure_miou(spec)
            res["miou"] = m.get("miou")
            res["miou_detail"] = m
        except EdgeDeeplabError as e:
            res["miou_error"] = str(e)
    return res


# --------------------------------------------------------------------------------------------
# Parent side: isolated workers
# --------------------------------------------------------------------------------------------

def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except (ValueError, AttributeError):
        return f"signal {-rc}"


def _last_meaningful_line(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        s = line.strip()
        if s and not s.startswith(("INFO:", "I0000", "WARNING: Logging", "Fatal Python error", "Current thread",
                                   "File ", "Thread ", "Extension modules")):
            return s[:200]
    return ""


def run_worker(spec: dict, timeout: float = 1800) -> dict:
    """Runs :func:`worker_main` in ``python -m benchmarks.worker`` and returns its row.

    A crash (signal), a timeout or a worker that prints no result becomes ``{"ok": False, "error": ...}``.
    """
    cmd = [sys.executable, "-m", "benchmarks.worker"]
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
    last = _last_meaningful_line(p.stderr)
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
                    "error": _last_meaningful_line(p.stderr + p.stdout) or f"exit {p.returncode}"}
        r = json.loads(out.read_text())
    lat = r.get("latency", {})
    return {"tool": "litert-benchmark", "command": shown, "median_ms": lat.get("median_ms"),
            "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "avg_ms": lat.get("avg_ms"), "std_ms": lat.get("std_ms"), "min_ms": lat.get("min_ms"),
            "max_ms": lat.get("max_ms"), "init_ms": lat.get("init_ms"), "runs": lat.get("num_runs"),
            "fully_accelerated": r.get("fully_accelerated")}


_LB_RE = re.compile(r"^(Model initialization|Warmup \(first\)|Warmup \(avg\)|Inference \((avg|min|max|median|std|p5|p95)\))"
                    r":\s+([0-9.]+) ms")


def parse_litert_benchmark_output(text: str) -> dict:
    """Parses the ``BENCHMARK RESULTS`` block printed by ``litert-benchmark`` (ms values).

    Returns:
        ``{"init_ms", "warmup_first_ms", "warmup_avg_ms", "avg_ms", "min_ms", "max_ms", "median_ms",
        "std_ms", "p5_ms", "p95_ms", "runs", "fully_accelerated"}`` (None where absent).
    """
    keys = {"Model initialization": "init_ms", "Warmup (first)": "warmup_first_ms", "Warmup (avg)": "warmup_avg_ms",
            "Inference (avg)": "avg_ms", "Inference (min)": "min_ms", "Inference (max)": "max_ms",
            "Inference (median)": "median_ms", "Inference (std)": "std_ms", "Inference (p5)": "p5_ms",
            "Inference (p95)": "p95_ms"}
    out = {v: None for v in keys.values()}
    out.update({"runs": None, "fully_accelerated": None})
    for line in text.splitlines():
        line = line.strip()
        m = _LB_RE.match(line)
        if m:
            out[keys[m.group(1)]] = float(m.group(3))
            if m.group(1) == "Inference (avg)":
                n = re.search(r"\((\d+) runs\)", line)
                out["runs"] = int(n.group(1)) if n else None
        elif line.startswith("Fully accelerated:"):
            out["fully_accelerated"] = line.split(":", 1)[1].strip() == "True"
    return out


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


def machine_info() -> dict:
    """CPU, its int8-relevant ISA features, cores, memory, OS, Python, runtimes and the load average."""
    info = {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "logical_cpus": os.cpu_count(), "numpy": np.__version__}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    from edge_deeplab.sysinfo import cpu_isa

    info["isa"] = cpu_isa()
    try:
        from edge_deeplab.runtime import available_runtimes

        info["runtimes"] = available_runtimes()
    except Exception:  # noqa: BLE001
        info["runtimes"] = {}
    return info


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


def run_benchmarks(models: Sequence, *, accelerators=("cpu",), threads: Optional[int] = None, warmup: int = 5,
                   runs: int = 50, min_seconds: float = 0.0, rounds: int = 3, dataset: Optional[str] = None,
                   data_dir=None, split: str = "val", max_images: Optional[int] = None, runtime: str = "auto",
                   delegate: Optional[str] = None, mean=None, std=None, e2e_runs: int = 10, frame=None,
                   frame_size=DEFAULT_FRAME, cross_check: bool = False, agreement: bool = True,
                   timeout: float = 1800, progress: Optional[ProgressFn] = None) -> dict:
    """Benchmarks every model on every accelerator, each in an isolated worker process.

    Args:
        models: ``.tflite`` paths (bad ones become per-model errors, not exceptions).
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

    Returns:
        ``{"results": [...], "errors": [...], "skipped": [...], "machine": {...}, "settings": {...}}``.

    Example:
        >>> report = run_benchmarks(["a.tflite", "b.tflite"], threads=2, runs=30)  # doctest: +SKIP
        >>> [r["fps"] for r in report["results"]]                                   # doctest: +SKIP
    """
    accs = _expand_accelerators(accelerators)
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
                           "max_images": max_images, "cross_check": cross_check}}
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
                        say(f"    error: {entry['error']}")
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
    """Pairs ``float32`` and ``int8`` rows of the same accelerator and reports the FPS ratio.

    Pairing: rows whose file names differ only by the variant token (``float32``/``fp32`` vs ``int8``),
    else the single float32 and int8 rows of each accelerator.
    """
    def key(name):
        return re.sub(r"(float32|fp32|int8|quant(ized)?)", "*", name.lower())

    out = []
    by_acc: Dict[str, List[dict]] = {}
    for r in report.get("results", []):
        by_acc.setdefault(r["accelerator"], []).append(r)
    for acc, rows in by_acc.items():
        floats = [r for r in rows if r.get("variant") == "float32"]
        ints = [r for r in rows if r.get("variant") in ("int8", "uint8")]
        for f in floats:
            match = [q for q in ints if key(Path(q["model"]).name) == key(Path(f["model"]).name)]
            if not match and len(floats) == 1 and len(ints) == 1 and \
                    (f.get("input") or {}).get("shape") == (ints[0].get("input") or {}).get("shape"):
                match = ints
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
