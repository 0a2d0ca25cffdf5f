"""The main job: bundled data -> float training -> QAT -> four TFLite exports -> analysis ->
accuracy and speed -> report -> portrait demo, in one resumable command.

Every step stores its result in ``DIR/steps/<step>.json`` (atomically) when it completes; a rerun with
the same ``DIR`` skips finished steps, and the two long steps (training, QAT) resume from their own
checkpoints if they were interrupted mid-way. Nothing already written is lost.

Layout of ``DIR``::

    data/                 the procedural dataset (train/val splits)
    run/                  float training run (model.keras, checkpoints/, logs/), run/qat/ (QAT)
    models/               float32.tflite, float16.tflite, int8_ptq.tflite, int8_qat.tflite,
                          w8a16.tflite (+ .json)
    report.md report.json miou_vs_fps.png latency.png predictions.png
    quant_int8_ptq.png quant_int8_qat.png (+ .json)   per-layer error vs float32.tflite
    demo.mp4              the portrait demo rendered on the bundled procedural clip

Example:
    >>> from edge_deeplab.app.quickstart.run import run_quickstart
    >>> report = run_quickstart("quickstart", fast=True)      # doctest: +SKIP
    >>> report["accuracy"]["int8_qat"]                         # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edge_deeplab.core.atomic_io import write_json_atomic, write_text_atomic
from edge_deeplab.core.errors import EdgeDeeplabError

#: report name -> (export variant, file name). Order is the report's order.
EXPORTS = {
    "tflite_float32": ("float32", "float32.tflite"),
    "tflite_float16": ("float16", "float16.tflite"),
    "int8_ptq": ("int8", "int8_ptq.tflite"),
    "int8_qat": ("qat-int8", "int8_qat.tflite"),
    "w8a16": ("w8a16", "w8a16.tflite"),
}
ACCURACY_KEYS = ("keras_float",) + tuple(EXPORTS)
PRETTY = {"keras_float": "Keras float32", "tflite_float32": "TFLite float32",
          "tflite_float16": "TFLite float16", "int8_ptq": "TFLite int8 (post-training)",
          "int8_qat": "TFLite int8 (QAT)", "w8a16": "TFLite w8a16 (int16 activations)"}
#: QAT learning rate as a fraction of the float run's (see the QAT step for the measurements).
QAT_LR_FACTOR = 0.2
STEPS = ("data", "train", "qat", "export", "analyze", "accuracy", "bench", "report", "demo")
#: Written into ``DIR`` before anything else: marks it as a quickstart run this toolkit may resume.
MARKER = ".edge_deeplab_quickstart"


def _claim_out_dir(out: Path) -> None:
    """Refuses an existing non-empty folder that is not a quickstart run, then marks ``out``.

    A run from before the marker existed is recognised by its ``steps/settings.json``.
    """
    if out.exists() and not out.is_dir():
        raise EdgeDeeplabError(f"--out {out} exists and is not a directory")
    ours = (out / MARKER).is_file() or (out / "steps" / "settings.json").is_file()
    if out.is_dir() and not ours and any(out.iterdir()):
        raise EdgeDeeplabError(
            f"--out {out} is a non-empty folder that is not a quickstart run (no {MARKER}); "
            f"choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).is_file():
        write_json_atomic(out / MARKER, {"edge_deeplab": "quickstart", "created": time.time()})

#: The quickstart's promises. ``float_miou``: Keras float mIoU at least this; ``qat_drop_points``:
#: QAT int8 at most this many mIoU points below float; ``qat_vs_ptq_points``: QAT int8 at most this
#: many points below post-training int8 (0: QAT >= PTQ); ``w8a16_vs_ptq_points``: likewise w8a16
#: (int16 activations) against post-training int8. The full run's are the project's targets.
#: w8a16 and PTQ share bit-identical int8 weights (both take min/max per-channel ranges), so
#: their mIoUs differ only by the int8 activations' rounding, which moves PTQ's mIoU by about a
#: tenth of a point either way on 200 held-out images: measured w8a16 - PTQ -0.03 points on the
#: full run (float 87.57, PTQ 87.49, w8a16 87.46), +0.03 and -0.09 on two other trained models,
#: while w8a16 stayed within 0.11 points of float. Hence 0.15 points, not 0: w8a16 >= PTQ cannot
#: hold on every run, and its closeness to float is what the tests hold it to.
FULL_THRESHOLDS = {"float_miou": 0.80, "qat_drop_points": 0.5, "qat_vs_ptq_points": 0.0,
                   "w8a16_vs_ptq_points": 0.15}
#: ``--fast`` is a 120-step smoke run of a 64x64 model: its accuracy says only that training
#: learned something and that quantization did not break it. Measured here (seed 0, 2 shared
#: cores): Keras float 38.01, PTQ int8 38.02, QAT int8 38.27 mIoU; on an AVX-512 Xeon PTQ 40.96,
#: w8a16 40.94. The floors leave room for the run-to-run noise of threaded CPU kernels, of 40 QAT
#: steps and of 16 calibration images.
FAST_THRESHOLDS = {"float_miou": 0.30, "qat_drop_points": 2.0, "qat_vs_ptq_points": 1.0,
                   "w8a16_vs_ptq_points": 0.5}
#: The exports whose every op must run on the LiteRT GPU accelerator (where one starts). w8a16 is
#: not among them: its int16 activations are a CPU (XNNPACK/reference kernel) format; its GPU
#: coverage is reported, not required, and it is benchmarked on the CPU only.
GPU_CHECKED = ("tflite_float32", "tflite_float16", "int8_ptq", "int8_qat")
#: Quantized exports that get a per-layer error report against float32.tflite.
QUANT_REPORTED = ("int8_ptq", "int8_qat")


def thresholds(fast: bool) -> dict:
    """The check thresholds of a full or ``--fast`` run."""
    return dict(FAST_THRESHOLDS if fast else FULL_THRESHOLDS)


def _describe_thresholds(t: dict) -> str:
    return (f"float mIoU >= {t['float_miou']:.2f}, QAT within {t['qat_drop_points']:g} points of "
            f"float, QAT >= PTQ - {t['qat_vs_ptq_points']:g} points, w8a16 >= PTQ - "
            f"{t['w8a16_vs_ptq_points']:g} points, every export but w8a16 fully on the GPU")


def evaluate_checks(accuracy: dict, models: dict, fast: bool) -> dict:
    """The quickstart's checks on its measured numbers.

    Args:
        accuracy: report name -> mIoU in [0, 1] (``keras_float``, ``int8_ptq``, ``int8_qat`` ...).
        models: report name -> model entry with ``gpu_fully_accelerated`` (True/False, or None
            where no GPU accelerator could start) and ``gpu_unsupported_ops``.
        fast: use the ``--fast`` thresholds.

    Returns:
        ``{name: {"ok": True|False|None, "message": one line}}`` in a fixed order; ``ok`` is None
        when the check could not be made (a number is missing, no GPU accelerator here).

    Example:
        >>> c = evaluate_checks({"keras_float": 0.7, "int8_qat": 0.69, "int8_ptq": 0.68}, {}, False)
        >>> c["float_miou"]["ok"], c["qat_within_float"]["ok"], c["qat_not_below_ptq"]["ok"]
        (False, False, True)
    """
    t = thresholds(fast)
    f, q, p = accuracy.get("keras_float"), accuracy.get("int8_qat"), accuracy.get("int8_ptq")

    def pct(v):
        return "—" if v is None else f"{100 * v:.2f}"

    out = {}
    ok = None if f is None else f >= t["float_miou"]
    out["float_miou"] = {"ok": ok, "message": f"Keras float mIoU {pct(f)} >= {100 * t['float_miou']:.2f}"}
    ok = None if f is None or q is None else (f - q) * 100 <= t["qat_drop_points"] + 1e-9
    out["qat_within_float"] = {"ok": ok, "message": f"QAT int8 mIoU {pct(q)} within "
                                                    f"{t['qat_drop_points']:g} points of float {pct(f)}"}

    def not_below_ptq(what: str, v, points: float) -> dict:
        ok = None if v is None or p is None else (p - v) * 100 <= points + 1e-9
        return {"ok": ok, "message": f"{what} mIoU {pct(v)} >= post-training int8 {pct(p)}"
                                     + (f" - {points:g} points" if points else "")}

    out["qat_not_below_ptq"] = not_below_ptq("QAT int8", q, t["qat_vs_ptq_points"])
    out["w8a16_not_below_ptq"] = not_below_ptq("w8a16", accuracy.get("w8a16"),
                                               t["w8a16_vs_ptq_points"])
    gpu = {k: (models.get(k) or {}).get("gpu_fully_accelerated") for k in GPU_CHECKED}
    bad = [k for k, v in gpu.items() if v is False]
    if bad:
        why = "; ".join(f"{k}: " + (", ".join((models[k].get("gpu_unsupported_ops") or [])) or "partial")
                        for k in bad)
        out["gpu_full_delegation"] = {"ok": False, "message": f"every export fully on the LiteRT GPU "
                                      f"accelerator: not {', '.join(bad)} ({why})"}
    elif any(v is None for v in gpu.values()):
        out["gpu_full_delegation"] = {"ok": None, "message": "every export fully on the LiteRT GPU "
                                      "accelerator: not checked (no GPU accelerator starts here)"}
    else:
        out["gpu_full_delegation"] = {"ok": True, "message": "every export fully on the LiteRT GPU "
                                      f"accelerator ({', '.join(GPU_CHECKED)})"}
    return out


def failed_checks(report: dict) -> list:
    """One line per failed check of a quickstart report (empty when all held or were n/a)."""
    details = report.get("check_details") or {}
    return [f"{name}: {(details.get(name) or {}).get('message', name)}"
            for name, ok in (report.get("checks") or {}).items() if ok is False]



class _Progress:
    """Step headers with elapsed time; long steps print their own progress bars below them."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.t0 = time.time()

    def step(self, i: int, name: str, what: str, cached: bool = False):
        el = time.time() - self.t0
        mark = "done earlier, skipped" if cached else "..."
        self.log(f"[{i}/{len(STEPS)}] {name:<8} {what} {mark}  (t+{el // 60:.0f}m{el % 60:02.0f}s)")


def _settings(fast: bool):
    from edge_deeplab.model.presets import preset, quickstart_knobs

    name = "fast" if fast else "quickstart"
    return (*preset(name), quickstart_knobs(name))


def _machine() -> dict:
    """The benchmark harness' machine description plus the versions of the pinned stack."""
    from edge_deeplab.core.sysinfo import machine_info, pkg_version

    info = machine_info()
    info["packages"] = {p: v for p in ("tensorflow-cpu", "tf-keras", "tensorflow-model-optimization",
                                       "ai-edge-litert") if (v := pkg_version(p))}
    return info


class _Steps:
    """Finished-step results stored under ``DIR/steps``."""

    def __init__(self, out: Path):
        self.dir = out / "steps"
        self.dir.mkdir(parents=True, exist_ok=True)

    def get(self, name: str) -> Optional[dict]:
        p = self.dir / f"{name}.json"
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except ValueError:
            return None  # a corrupt marker means: do the step again

    def put(self, name: str, result: dict) -> dict:
        write_json_atomic(self.dir / f"{name}.json", result)
        return result


def run_quickstart(out_dir, *, fast: bool = False, log: Callable[[str], None] = print,
                   gpu: Optional[bool] = None) -> dict:
    """Runs the whole pipeline into ``out_dir`` (resumable) and returns ``report.json``'s content.

    Args:
        out_dir: output directory; rerunning with the same directory resumes.
        fast: the CI smoke configuration (tiny model, short training; same code path, no accuracy
            target).
        log: where progress lines go.
        gpu: benchmark on the LiteRT GPU accelerator too (``None``: when it starts here).
    """
    out = Path(out_dir)
    _claim_out_dir(out)
    model_cfg, train_cfg, knobs = _settings(fast)
    steps = _Steps(out)
    prog = _Progress(log)
    settings = {"fast": fast, "model": model_cfg.to_dict(), "train": _train_cfg_dict(train_cfg)}
    prior = steps.get("settings")
    if prior is not None and prior.get("fast") != fast:
        raise EdgeDeeplabError(
            f"{out} holds a {'--fast' if prior.get('fast') else 'full'} quickstart; "
            f"use another --out for a {'--fast' if fast else 'full'} one")
    steps.put("settings", settings)

    # 1. data ----------------------------------------------------------------------------
    data_dir = out / "data"
    res = steps.get("data")
    prog.step(1, "data", "generating the procedural dataset", cached=res is not None)
    if res is None:
        from edge_deeplab.data.synthetic import ensure_synthetic

        kw = {}
        if knobs["num_train"]:
            kw = dict(num_train=knobs["num_train"], num_val=knobs["num_val"])
        root = ensure_synthetic(data_dir.resolve(), **kw)
        res = steps.put("data", {"data_dir": str(root)})  # absolute: found from any directory
    data_dir = Path(res["data_dir"])
    train_cfg = dataclasses.replace(train_cfg, data_dir=str(data_dir))

    # 2. train ---------------------------------------------------------------------------
    run_dir = out / "run"
    res = steps.get("train")
    prog.step(2, "train", f"float model ({_describe(model_cfg)}, {train_cfg.steps} steps)",
              cached=res is not None)
    if res is None:
        from edge_deeplab.training.train import checkpoint_prefixes, train

        t = time.time()
        result = train(model_cfg, train_cfg, run_dir,
                       resume=bool(checkpoint_prefixes(run_dir / "checkpoints")), verbose=1)
        res = steps.put("train", {"result": _jsonable(result), "seconds": time.time() - t})

    # 3. QAT -----------------------------------------------------------------------------
    res_qat = steps.get("qat")
    prog.step(3, "qat", "quantization-aware fine-tuning", cached=res_qat is not None)
    if res_qat is None:
        from edge_deeplab.training.qat import run_qat
        from edge_deeplab.training.train import checkpoint_prefixes

        t = time.time()
        kw = {"steps": knobs["qat_steps"]} if knobs["qat_steps"] else {}
        # The anchors' QAT recipe (lr = float lr / 100, `edge-deeplab qat`'s default) suits a long
        # SGD schedule. After this short Adam run it lost 1.9 mIoU points (83.16 vs 85.04 float),
        # while lr/10 gave 84.74 and lr/5 85.07 (>= float and >= post-training int8's 84.95): the
        # quantized graph needs real steps to re-fit. Measured on the held-out split, seed 0.
        kw["lr"] = train_cfg.lr * QAT_LR_FACTOR
        # evaluate=False: step 6 scores every variant through one code path anyway.
        result = run_qat(run_dir, resume=bool(checkpoint_prefixes(run_dir / "qat" / "checkpoints")),
                         verbose=1, evaluate=False, **kw)
        res_qat = steps.put("qat", {"result": _jsonable(result), "seconds": time.time() - t})

    # 4. export --------------------------------------------------------------------------
    models_dir = out / "models"
    res = _complete(steps.get("export"), EXPORTS)
    prog.step(4, "export", "float32, float16, int8 (post-training), int8 (QAT), w8a16",
              cached=res is not None)
    if res is None:
        from converters.export import export_tflite

        exported = {}
        for key, (variant, fname) in EXPORTS.items():
            path = models_dir / fname
            t = time.time()
            if not path.is_file():
                kw = {}
                if variant in ("int8", "w8a16"):
                    kw = dict(calibration_dataset="synthetic", data_dir=str(data_dir),
                              calibration_steps=knobs["calib_steps"])
                export_tflite(str(run_dir), path, variant, **kw)
            exported[key] = {"path": str(path), "variant": variant, "size_bytes": path.stat().st_size,
                             "seconds": round(time.time() - t, 1)}
            log(f"    {fname:<18} {path.stat().st_size / 1e6:6.2f} MB")
        res = steps.put("export", exported)
    exported = res

    # 5. analyze -------------------------------------------------------------------------
    res = _complete(steps.get("analyze"), EXPORTS)
    prog.step(5, "analyze", "op sets, float islands, LiteRT GPU delegation, per-layer int8 error",
              cached=res is not None and _complete(steps.get("quant_report"), QUANT_REPORTED) is not None)
    if res is None:
        from converters.analyze import analyze_tflite

        analyses = {}
        for key, e in exported.items():
            a = analyze_tflite(e["path"], gpu=True)
            analyses[key] = a
            g = a.get("gpu") or {}
            log(f"    {Path(e['path']).name:<18} ops={sum(a['ops'].values()):<4} "
                f"gpu fully delegated={g.get('fully_accelerated')} ({g.get('method')})")
        res = steps.put("analyze", analyses)
    analyses = res
    res = _complete(steps.get("quant_report"), QUANT_REPORTED)
    if res is None:
        res = steps.put("quant_report", _quant_reports(out, exported, data_dir, knobs, log))
    quant = res

    # 6. accuracy ------------------------------------------------------------------------
    res = _complete(steps.get("accuracy"), ACCURACY_KEYS)
    prog.step(6, "accuracy", "mIoU of every variant on the held-out split", cached=res is not None)
    if res is None:
        res = steps.put("accuracy", _accuracy(run_dir, data_dir, exported, knobs["eval_images"], log))
    accuracy = res

    # 7. bench ---------------------------------------------------------------------------
    res = steps.get("bench")
    if res is not None and not {r.get("variant_key") for r in res.get("results", [])} >= set(EXPORTS):
        res = None  # a run directory from before an export was added
    prog.step(7, "bench", "latency/FPS on CPU (and the GPU accelerator where it starts)",
              cached=res is not None)
    if res is None:
        res = steps.put("bench", _bench(exported, accuracy, knobs, gpu, log))
    bench = res

    # 8. report --------------------------------------------------------------------------
    prog.step(8, "report", "report.md, report.json, plots")
    report = _report(out, model_cfg, train_cfg, steps, exported, analyses, accuracy, bench, fast,
                     quant)
    _predictions_picture(run_dir, data_dir, exported, out / "predictions.png", model_cfg)
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", _markdown(report, out))

    # 9. demo ----------------------------------------------------------------------------
    res = steps.get("demo")
    prog.step(9, "demo", "portrait demo on the bundled clip -> demo.mp4", cached=res is not None and (out / "demo.mp4").is_file())
    if res is None or not (out / "demo.mp4").is_file():
        from demos.portrait import demo_on_clip

        work = out / "demo_work"
        r = demo_on_clip(exported["int8_qat"]["path"], work, num_frames=knobs["demo_frames"],
                         log=lambda s: log("    " + s))
        os.replace(work / "portrait.mp4", out / "demo.mp4")
        steps.put("demo", {"frames": getattr(r, "frames", None), "fps": getattr(r, "fps", None)})
    report["demo"] = str(out / "demo.mp4")
    write_json_atomic(out / "report.json", report)
    el = time.time() - prog.t0
    log(f"done in {el // 60:.0f}m{el % 60:02.0f}s: {out / 'report.md'}")
    return report


# ------------------------------------------------------------------------------------- helpers

def _describe(cfg) -> str:
    h, w = cfg.input_size
    return f"{h}x{w}, alpha {cfg.alpha}, OS {cfg.output_stride}, {cfg.num_classes} classes"


def _train_cfg_dict(tc) -> dict:
    return tc.to_dict() if hasattr(tc, "to_dict") else dataclasses.asdict(tc)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _complete(res: Optional[dict], keys) -> Optional[dict]:
    """A cached step result that covers ``keys``; None (do the step again) when one is missing,
    e.g. in a run directory from before the w8a16 export was added."""
    if res is None or not set(keys) <= set(res):
        return None
    return res


def _quant_reports(out: Path, exported: dict, data_dir: Path, knobs: dict, log) -> dict:
    """Per-layer error of the PTQ and QAT int8 models against float32.tflite on held-out images:
    ``quant_<key>.json`` (every op output) and ``quant_<key>.png`` (SNR vs depth, worst named)."""
    from converters.quant_report import (
        model_input_size,
        plot_report,
        quant_report,
        report_images,
    )
    from edge_deeplab.core.atomic_io import write_json_atomic

    ref = exported["tflite_float32"]["path"]
    n = knobs.get("quant_report_images") or 8
    size = model_input_size(ref)
    results = {}
    for key in QUANT_REPORTED:
        images = list(report_images(size, "synthetic", data_dir=str(data_dir), split="val", n=n))
        try:
            r = quant_report(exported[key]["path"], ref, images, max_images=n, threads=os.cpu_count())
        except EdgeDeeplabError as e:  # a diagnostic must not lose the main job; the report says it
            log(f"    {Path(exported[key]['path']).name:<18} per-layer report failed: {e}")
            results[key] = {"error": str(e)}
            continue
        write_json_atomic(out / f"quant_{key}.json", r)
        plot_report(r, out / f"quant_{key}.png")
        worst = r["worst"][0] if r["worst"] else {}
        log(f"    {Path(exported[key]['path']).name:<18} output SNR {r['output']['snr_db']} dB; "
            f"worst layer {worst.get('layer') or worst.get('op')} ({worst.get('snr_drop_db')} dB lost)")
        results[key] = {"plot": f"quant_{key}.png", "json": f"quant_{key}.json",
                        "images": r["images"], "matched": r["matched"], "output": r["output"],
                        "worst": r["worst"]}
    return results


def _accuracy(run_dir: Path, data_dir: Path, exported: dict, max_images, log) -> dict:
    from edge_deeplab.data import load_dataset
    from edge_deeplab.evaluation.evaluate import evaluate_keras, evaluate_tflite

    ds = load_dataset("synthetic", data_dir=str(data_dir), split="val")
    if max_images and len(ds) > max_images and hasattr(ds, "subset"):
        ds = ds.subset(max_images)
    results = {}
    r = evaluate_keras(str(run_dir / "model.keras"), ds)
    results["keras_float"] = r
    log(f"    {PRETTY['keras_float']:<30} mIoU {r['miou']:.4f}")
    for key, e in exported.items():
        r = evaluate_tflite(e["path"], ds, threads=os.cpu_count())
        results[key] = r
        log(f"    {PRETTY[key]:<30} mIoU {r['miou']:.4f}")
    return {k: {kk: v.get(kk) for kk in ("miou", "per_class_iou", "pixel_accuracy", "num_images")}
            for k, v in results.items()}


def _bench(exported: dict, accuracy: dict, knobs: dict, gpu: Optional[bool], log) -> dict:
    from benchmarks.harness import run_benchmarks

    accels = ["cpu"]
    if gpu is None:
        from edge_deeplab.runtime import probe_accelerator

        gpu = bool(probe_accelerator(exported["tflite_float32"]["path"], "gpu", timeout=300).get("available"))
    if gpu:
        accels.append("gpu")
    def bench(keys, accelerators):
        return run_benchmarks([exported[k]["path"] for k in keys if k in exported],
                              accelerators=accelerators, threads=2, warmup=knobs["bench_warmup"],
                              runs=knobs["bench_runs"], rounds=3,
                              progress=lambda s: log(f"    {s}") if isinstance(s, str) else None)

    # The GPU-checked exports on every accelerator; the rest (w8a16) on the CPU only.
    res = bench(GPU_CHECKED, accels)
    rest = [k for k in exported if k not in GPU_CHECKED]
    if rest:
        more = bench(rest, ["cpu"])
        res["results"] = res.get("results", []) + more.get("results", [])
        res["errors"] = res.get("errors", []) + more.get("errors", [])
    by_path = {os.path.abspath(e["path"]): k for k, e in exported.items()}  # bench reports absolute paths
    for r in res.get("results", []):
        key = by_path.get(os.path.abspath(str(r.get("model"))))
        if key and r.get("miou") is None and key in accuracy:
            r["miou"] = accuracy[key]["miou"]
        if key:
            r["variant_key"] = key
    return res


def _predictions_picture(run_dir: Path, data_dir: Path, exported: dict, path: Path, cfg, n_images: int = 4):
    """input | ground truth | float prediction | QAT int8 prediction for a few held-out images."""
    import cv2

    from edge_deeplab.core.atomic_io import atomic_path
    from edge_deeplab.core.imaging import colorize, voc_palette
    from edge_deeplab.data import load_dataset
    from edge_deeplab.evaluation.predictors import KerasPredictor, TFLitePredictor
    from edge_deeplab.evaluation.tiling import predict_images
    from edge_deeplab.model.model_io import load_model
    from edge_deeplab.runtime import open_runner

    ds = load_dataset("synthetic", data_dir=str(data_dir), split="val")
    idx = list(range(min(n_images, len(ds))))
    images, masks = zip(*(ds.read(i) for i in idx))
    model, _, meta = load_model(run_dir / "model.keras")
    float_pred = [cm for _, cm in predict_images(KerasPredictor(model, metadata=meta), list(images))]
    with open_runner(exported["int8_qat"]["path"], "cpu", threads=os.cpu_count()) as runner:
        qat_pred = [cm for _, cm in predict_images(TFLitePredictor(runner), list(images))]
    n = cfg.num_classes
    rows = []
    for img, gt, fp, qp in zip(images, masks, float_pred, qat_pred):
        tiles = [img, colorize(gt, n), colorize(fp, n), colorize(qp, n)]
        rows.append(np.concatenate([cv2.resize(t, (192, 192), interpolation=cv2.INTER_NEAREST) for t in tiles], axis=1))
    grid = np.concatenate(rows, axis=0)
    header = np.full((28, grid.shape[1], 3), 255, np.uint8)
    for j, title in enumerate(("input", "ground truth", "float (Keras)", "int8 QAT (TFLite)")):
        cv2.putText(header, title, (j * 192 + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    legend = np.full((28, grid.shape[1], 3), 255, np.uint8)
    x = 8
    for c, name in enumerate(cfg.resolved_labels()):
        col = tuple(int(v) for v in voc_palette(n)[3 * c: 3 * c + 3])
        cv2.rectangle(legend, (x, 8), (x + 14, 22), col, -1)
        cv2.putText(legend, name, (x + 18, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 24 + 9 * len(name)
    pic = np.concatenate([header, grid, legend], axis=0)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR))


def _report(out, model_cfg, train_cfg, steps, exported, analyses, accuracy, bench, fast,
            quant=None) -> dict:
    from benchmarks.report import plot_report

    models = {}
    for key, e in exported.items():
        a = analyses.get(key, {})
        g = a.get("gpu") or {}
        models[key] = {"path": e["path"], "variant": e["variant"], "size_bytes": e["size_bytes"],
                       "ops": a.get("ops"), "float_islands": a.get("float_islands"),
                       "gpu_fully_accelerated": g.get("fully_accelerated"),
                       "gpu_unsupported_ops": g.get("unsupported_ops"), "gpu_check": g.get("method"),
                       "inputs": a.get("inputs"), "outputs": a.get("outputs")}
    acc = {k: accuracy[k]["miou"] for k in ACCURACY_KEYS if k in accuracy}
    train_res = (steps.get("train") or {})
    qat_res = (steps.get("qat") or {})
    details = evaluate_checks(acc, models, fast)
    checks = {name: d["ok"] for name, d in details.items()}
    plots = {}
    try:
        plot_report(bench, out / "bench.png")
        plots["bench"] = "bench.png"
    except Exception as e:  # noqa: BLE001 - a plot failure must not lose the report
        plots["bench_error"] = str(e)
    _miou_vs_fps_plot(bench, accuracy, out / "miou_vs_fps.png")
    plots["miou_vs_fps"] = "miou_vs_fps.png"
    return {
        "accuracy": acc,
        "accuracy_detail": accuracy,
        "speed": bench,
        "models": models,
        "checks": checks,
        "check_details": details,
        "thresholds": dict(thresholds(fast), gpu_checked=list(GPU_CHECKED)),
        "config": {"fast": fast, "model": model_cfg.to_dict(), "train": _train_cfg_dict(train_cfg),
                   "train_seconds": train_res.get("seconds"), "qat_seconds": qat_res.get("seconds"),
                   "train_result": train_res.get("result"), "qat_result": qat_res.get("result")},
        "machine": _machine(),
        "plots": plots,
        "pictures": {"predictions": "predictions.png"},
        "quant_report": quant or {},
    }


def _miou_vs_fps_plot(bench: dict, accuracy: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_deeplab.core.atomic_io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for r in bench.get("results", []):
        key = r.get("variant_key")
        if not key or r.get("fps") is None or key not in accuracy or r.get("accelerator") != "cpu":
            continue
        ax.scatter(r["fps"], 100 * accuracy[key]["miou"], s=60)
        ax.annotate(PRETTY.get(key, key), (r["fps"], 100 * accuracy[key]["miou"]),
                    textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("FPS (CPU, 2 threads, model only)")
    ax.set_ylabel("mIoU (%) on held-out split")
    ax.set_title("Accuracy vs speed")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _fmt(v, spec=".2f", none="—"):
    return none if v is None else format(v, spec)


def _cpu_int8_speedup(report: dict):
    """CPU FPS of PTQ int8 over TFLite float32 in this report's bench, or None."""
    fps = {r.get("variant_key"): r.get("fps") for r in report["speed"].get("results", [])
           if r.get("accelerator") == "cpu"}
    i8 = fps.get("int8_ptq") or fps.get("int8_qat")
    f32 = fps.get("tflite_float32")
    return i8 / f32 if i8 and f32 else None


def _markdown(report: dict, out: Path) -> str:
    cfg = report["config"]
    m = cfg["model"]
    acc = report["accuracy"]
    f = acc.get("keras_float")
    lines = ["# edge_deeplab quickstart report", ""]
    lines.append(f"DeepLab v3+ / MobileNet-v2 (alpha {m['alpha']}, output stride {m['output_stride']}, "
                 f"input {m['input_size'][0]}x{m['input_size'][1]}, {m['num_classes']} classes: "
                 f"{', '.join(m.get('labels') or [])}), trained from scratch on the bundled procedural "
                 f"dataset for {cfg['train'].get('steps')} steps "
                 f"({_fmt((cfg.get('train_seconds') or 0) / 60, '.1f')} min), then QAT "
                 f"({_fmt((cfg.get('qat_seconds') or 0) / 60, '.1f')} min)."
                 + (" **--fast smoke run: accuracy is not meaningful.** It is shrunk to stay cheap: "
                    "160 training scenes, 48 held-out images, 16 calibration images (int8 and "
                    "w8a16), 40 QAT steps, 2 images per per-layer error report, 10 timed runs; the "
                    "checks use the --fast thresholds below." if cfg["fast"] else ""))
    lines += ["", "## Accuracy and speed", ""]
    speed = {}
    for r in report["speed"].get("results", []):
        speed.setdefault(r.get("variant_key"), {})[r.get("accelerator")] = r
    n_img = next(iter(report["accuracy_detail"].values()), {}).get("num_images")
    lines.append(f"mIoU on the held-out split ({n_img} images); latency is model-only, CPU = LiteRT "
                 "XNNPACK with 2 threads. The w8a16 row (int8 weights, int16 activations, through "
                 "litert-quantizer) goes through the same eval and bench code, on the CPU only.")
    lines.append("")
    lines.append("| model | size | mIoU | Δ vs float (points) | full GPU delegation | CPU p50 ms | CPU FPS |")
    lines.append("|---|---:|---:|---:|:---:|---:|---:|")
    for key in ACCURACY_KEYS:
        if key not in acc:
            continue
        mdl = report["models"].get(key, {})
        cpu = speed.get(key, {}).get("cpu", {})
        lat = cpu.get("latency_ms") or {}
        delta = None if f is None or key == "keras_float" else 100 * (acc[key] - f)
        size = f"{mdl['size_bytes'] / 1e6:.2f} MB" if mdl.get("size_bytes") else "—"
        gpu = {True: "yes", False: "NO", None: "—"}[mdl.get("gpu_fully_accelerated")] if mdl else "—"
        lines.append(f"| {PRETTY[key]} | {size} | {100 * acc[key]:.2f} | {_fmt(delta, '+.2f')} | {gpu} | "
                     f"{_fmt(lat.get('p50'))} | {_fmt(cpu.get('fps'), '.1f')} |")
    gpu_rows = [(k, v["gpu"]) for k, v in speed.items() if "gpu" in v]
    if gpu_rows:
        lines += ["", "GPU accelerator (LiteRT WebGPU): " + ", ".join(
            f"{PRETTY.get(k, k)} p50 {_fmt((r.get('latency_ms') or {}).get('p50'))} ms"
            for k, r in gpu_rows)
            + ". On a machine without a GPU this is Mesa's software rasterizer (lavapipe): "
              "coverage and outputs are real, timings are not."]
    lines += ["", "![mIoU vs FPS](miou_vs_fps.png)", ""]
    if "bench" in report.get("plots", {}):
        lines += ["![latency](bench.png)", ""]
    lines += ["## Predictions on held-out images", "", "![predictions](predictions.png)", ""]
    quant = report.get("quant_report") or {}
    if quant:
        lines += ["## Per-layer quantization error", "",
                  "SNR of every op output of each int8 model against float32.tflite on held-out "
                  "images (`edge-deeplab quant-report`); the worst layers are ranked by the SNR they "
                  "lose themselves. The QAT model was fine-tuned from the float one, so its error "
                  "includes those weight changes, not only rounding.", ""]
        for key, q in quant.items():
            if q.get("error"):
                lines += [f"**{PRETTY.get(key, key)}**: no report ({q['error']}).", ""]
                continue
            out_snr = (q.get("output") or {}).get("snr_db")
            worst = ", ".join(f"{w.get('layer') or w.get('op')} ({_fmt(w.get('snr_drop_db'), '+.1f')} dB)"
                              for w in (q.get("worst") or [])[:3])
            lines += [f"**{PRETTY.get(key, key)}** ({q.get('images')} images, {q.get('matched')} op "
                      f"outputs): model output SNR {_fmt(out_snr, '.1f')} dB; worst layers: "
                      f"{worst or '—'}.", "", f"![{key} per-layer error]({q['plot']})", ""]
    lines += ["## Exported models", "", "| file | ops | float islands | GPU check |", "|---|---|---:|---|"]
    for key, mdl in report["models"].items():
        ops = ", ".join(f"{k}×{v}" for k, v in sorted((mdl.get("ops") or {}).items()))
        isl = len(mdl.get("float_islands") or [])
        lines.append(f"| {Path(mdl['path']).name} | {ops} | {isl} | "
                     f"{mdl.get('gpu_check') or '—'}{': ' + ', '.join(mdl['gpu_unsupported_ops']) if mdl.get('gpu_unsupported_ops') else ''} |")
    lines += ["", "## Checks", ""]
    if cfg["fast"]:
        lines += ["Thresholds for the **--fast** smoke run (a 120-step 64x64 model, not the accuracy "
                  "targets): " + _describe_thresholds(thresholds(True)) + ". The full run's: "
                  + _describe_thresholds(thresholds(False)) + ".", ""]
    details = report.get("check_details") or {}
    for k, v in report["checks"].items():
        msg = (details.get(k) or {}).get("message") or k.replace("_", " ")
        lines.append(f"- {({True: 'PASS', False: 'FAIL', None: 'n/a'})[v]}: {msg}")
    mach = report["machine"]
    lines += ["", "## Machine", "",
              f"{mach['platform']}, {mach.get('cpu', 'CPU')} x {mach['logical_cpus']}, "
              f"{mach.get('memory_gb', '?')} GB, Python {mach['python']}; runtimes: "
              + ", ".join(f"{k} {v}" for k, v in mach["runtimes"].items()), ""]
    if mach.get("isa"):
        from edge_deeplab.core.sysinfo import int8_speed_note, isa_line

        lines += [f"CPU ISA: {isa_line(mach['isa'])}.", "",
                  int8_speed_note(mach["isa"], _cpu_int8_speedup(report)), ""]
    lines += [
              "Portrait demo on the bundled clip: [demo.mp4](demo.mp4)", ""]
    return "\n".join(lines)
