"""Worker side of the benchmark: measures one ``.tflite`` on one accelerator in this process.

:func:`worker_main` is the body of ``python -m benchmarks.worker``; the parent side
(:mod:`benchmarks.harness`) runs one worker per model x accelerator, so a garbage file, an unknown
custom op or a native crash costs that one row a short error and never the other rows.

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
* ``e2e_ms``: end-to-end on a JPEG frame: decode, resize (the model's geometry: letterbox unless its
  metadata says stretch), normalize(+quantize), infer, postprocess
  (argmax at model resolution then nearest upsample to the frame size, as phone apps do; 1-channel
  outputs are thresholded), each stage separately plus the total;
* ``model_sha256``: the SHA-256 of the file the worker opened, so a row names its model by content;
* ``peak_rss_mb``: the worker's peak resident memory (``VmHWM``) after the timed runs, and
  ``baseline_rss_mb`` before the model was opened (Python + numpy + runtime import);
* ``fully_accelerated`` / ``unsupported_ops`` from the runtime;
* ``agreement_vs_cpu`` (non-CPU rows, added by the harness): % of pixels whose argmax equals the
  CPU's on the same frame;
* ``miou`` when a dataset is given (through the same runtime and accelerator, via
  :func:`edge_deeplab.evaluation.evaluate.evaluate_tflite`);
* ``cross_check`` (CPU rows, ``cross_check=True``, added by the harness): ``litert-benchmark`` on
  the same model/threads.

Example:
    >>> from benchmarks.measure import latency_stats
    >>> s = latency_stats([10.0, 11.0, 12.0, 13.0])
    >>> s["p50"], round(s["fps"], 2)
    (11.5, 86.96)
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from edge_deeplab.core.atomic_io import file_sha256
from edge_deeplab.core.contract import semantics as contract
from edge_deeplab.core.errors import DelegateUnavailableError, EdgeDeeplabError

#: Prefix of the one result line a worker prints on stdout.
RESULT_MARK = "@@EDGE_DEEPLAB_BENCH@@ "
DEFAULT_FRAME = (720, 1280)


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
# The in-worker measurement
# --------------------------------------------------------------------------------------------

def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


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
    from edge_deeplab.core.native_logs import capture_native_stderr, native_error_line

    t0 = time.perf_counter()
    err = None
    with capture_native_stderr() as cap:
        try:
            runner = open_runner(path, accelerator="cpu" if acc == "delegate" else acc,
                                 threads=spec.get("threads"), runtime=spec.get("runtime") or "auto",
                                 delegate=spec.get("delegate") if acc == "delegate" else None,
                                 gpu_precision=spec.get("gpu_precision") or "fp16")
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

    from edge_deeplab.core.native_logs import capture_native_stderr, native_error_line
    from edge_deeplab.core.pixels import resize
    from edge_deeplab.runtime import dequantize
    from edge_deeplab.runtime.model_input import ModelInput

    path = spec["model"]
    info_in, info_out = runner.input, runner.output
    h, w = int(info_in.shape[1]), int(info_in.shape[2])
    # The runtime's one image-to-input path (normalization, geometry and padding as eval and the demo).
    mi = ModelInput.for_runner(runner, spec.get("mean"), spec.get("std"))
    if spec.get("frame_path"):
        from edge_deeplab.core.imaging import read_image_rgb

        frame = read_image_rgb(spec["frame_path"])
    else:
        frame = synthetic_frame(tuple(spec.get("frame_size") or DEFAULT_FRAME))
    jpeg = encode_jpeg(frame)
    x = mi(frame)[0]

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
        buf = np.empty((h, w, mi.channels), np.dtype(info_in.dtype))
        for _ in range(e2e_runs):
            t_all = time.perf_counter()
            t = time.perf_counter()
            bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            stages["decode"].append(_ms(t))
            t = time.perf_counter()
            box = mi.box(rgb.shape[:2])
            small = resize(rgb, box[2:])
            stages["resize"].append(_ms(t))
            t = time.perf_counter()
            xi = mi.place(small, box, out=buf)[None]
            stages["normalize"].append(_ms(t))
            t = time.perf_counter()
            yi = runner.run(xi)
            stages["infer"].append(_ms(t))
            t = time.perf_counter()
            cm = output_to_classmap(yi, info_out)
            cm = resize(cm.astype(np.uint8 if cm.max() < 256 else np.uint16), (h, w), "nearest")
            top, left, nh, nw = box
            classmap_full = resize(  # noqa: F841 - timed as phone apps do it
                cm[top:top + nh, left:left + nw], rgb.shape[:2], "nearest")
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
                    "geometry": mi.geometry,
                    "postprocess_kind": "argmax@model-res + nearest upsample"
                    if (len(info_out.shape) == 4 and info_out.shape[-1] > 1) else "threshold/classmap + nearest upsample"})
    variant = contract.variant(path, runner.metadata)
    row.update({
        "ok": True,
        "model_sha256": file_sha256(path),
        "runtime": runner.runtime_name,
        "runtime_version": runner.runtime_version,
        "gpu_precision": runner.gpu_precision,
        "delegate": spec.get("delegate") if row["accelerator"] == "delegate" else None,
        "threads": spec.get("threads"),
        "variant": variant,
        "size_mb": round(Path(path).stat().st_size / 1e6, 3),
        "input": info_in.to_dict(),
        "output": info_out.to_dict(),
        "normalization": {"mean": [float(v) for v in mi.mean], "std": [float(v) for v in mi.std],
                          "source": mi.normalization_source},
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
    outs = list(getattr(runner, "outputs", None) or [info_out])
    if len(outs) > 1:
        row["num_outputs"] = len(outs)
        row["output_note"] = (f"{Path(path).name} has {len(outs)} outputs; measured output 0 "
                              f"{info_out.name!r} {list(info_out.shape)} (others: "
                              + ", ".join(f"{o.name!r} {list(o.shape)}" for o in outs[1:]) + ")")
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
    from edge_deeplab.evaluation.evaluate import evaluate_tflite

    d = spec["dataset"]
    ds = load_dataset(d["name"], d.get("data_dir"), d.get("split") or "val")
    if d.get("max_images"):
        ds = ds.subset(int(d["max_images"]))
    r = evaluate_tflite(spec["model"], ds, accelerator=spec.get("accelerator", "cpu"), threads=spec.get("threads"),
                        runtime=spec.get("runtime") or "auto", progress=lambda done, total: None,
                        gpu_precision=spec.get("gpu_precision") or "fp16")
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
