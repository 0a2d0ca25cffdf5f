"""The quickstart's report: ``report.json``'s content, ``report.md``, the mIoU-vs-FPS plot and the
predictions picture.

Example:
    >>> report = build_report(out, model_cfg, train_cfg, steps, exported, analyses, accuracy,
    ...                       bench, fast=True)                       # doctest: +SKIP
    >>> write_text_atomic(out / "report.md", markdown(report, out))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_deeplab.app.quickstart.checks import describe_thresholds, evaluate_checks, thresholds
from edge_deeplab.app.quickstart.plan import ACCURACY_KEYS, GPU_CHECKED, PRETTY


def _machine() -> dict:
    """The benchmark harness' machine description plus the versions of the pinned stack."""
    from edge_deeplab.core.sysinfo import machine_info, pkg_version

    info = machine_info()
    info["packages"] = {p: v for p in ("tensorflow-cpu", "tf-keras", "tensorflow-model-optimization",
                                       "ai-edge-litert") if (v := pkg_version(p))}
    return info


def predictions_picture(run_dir: Path, data_dir: Path, exported: dict, path: Path, cfg, n_images: int = 4):
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


def build_report(out, model_cfg, train_cfg, steps, exported, analyses, accuracy, bench, fast,
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
    miou_vs_fps_plot(bench, accuracy, out / "miou_vs_fps.png")
    plots["miou_vs_fps"] = "miou_vs_fps.png"
    return {
        "accuracy": acc,
        "accuracy_detail": accuracy,
        "speed": bench,
        "models": models,
        "checks": checks,
        "check_details": details,
        "thresholds": dict(thresholds(fast), gpu_checked=list(GPU_CHECKED)),
        "config": {"fast": fast, "model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
                   "train_seconds": train_res.get("seconds"), "qat_seconds": qat_res.get("seconds"),
                   "train_result": train_res.get("result"), "qat_result": qat_res.get("result")},
        "machine": _machine(),
        "plots": plots,
        "pictures": {"predictions": "predictions.png"},
        "quant_report": quant or {},
    }


def miou_vs_fps_plot(bench: dict, accuracy: dict, path: Path):
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
    """The benchmark's own CPU int8-over-float32 FPS ratio (:func:`benchmarks.harness.int8_speedup`), or None."""
    from benchmarks.harness import int8_speedup

    pairs = [p for p in int8_speedup(report["speed"]) if p["accelerator"] == "cpu"]
    return pairs[0]["speedup"] if pairs else None


def markdown(report: dict, out: Path) -> str:
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
                  "targets): " + describe_thresholds(thresholds(True)) + ". The full run's: "
                  + describe_thresholds(thresholds(False)) + ".", ""]
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
