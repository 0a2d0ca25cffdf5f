"""Side-by-side benchmark reports: Markdown table, JSON, and plots (matplotlib, Agg backend).

The JSON is the report dict of :func:`benchmarks.harness.run_benchmarks` (``results``, ``errors``,
``skipped``, ``machine``, ``settings``), written atomically. Each result carries at least
``model accelerator runtime fully_accelerated latency_ms{mean,p50,p90,p99} fps init_ms peak_rss_mb``
and ``miou`` when a dataset was given.

Example:
    >>> rep = {"results": [{"model": "m.tflite", "variant": "int8", "size_mb": 2.0, "accelerator": "cpu",
    ...        "runtime": "litert-compiled-model", "runtime_version": "2.3.0", "fully_accelerated": True,
    ...        "latency_ms": {"mean": 10.0, "p50": 9.5, "p90": 11.0, "p99": 12.0}, "fps": 100.0}],
    ...        "machine": {}}
    >>> print(to_markdown(rep).splitlines()[2])
    | m.tflite | int8 | 2.00 | cpu | litert-compiled-model 2.3.0 | yes | 9.50 | 100.0 | - |
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from edge_deeplab.core.atomic_io import atomic_path, write_json_atomic, write_text_atomic

COLUMNS = ("model", "variant", "size (MB)", "accelerator", "runtime", "full delegation", "p50 (ms)", "FPS", "mIoU")


def _f(v, fmt="{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def _delegation(r: dict) -> str:
    fa = r.get("fully_accelerated")
    if fa is None:
        return "?"
    if fa:
        return "yes"
    ops = r.get("unsupported_ops") or []
    return "no" + (f" ({', '.join(ops)})" if ops else "")


def _runtime(r: dict) -> str:
    rt = r.get("runtime") or "?"
    v = r.get("runtime_version")
    return f"{rt} {v}" if v else rt


def _accelerator(r: dict) -> str:
    """``cpu``, or ``gpu (fp16)`` / ``gpu (fp32)``: the GPU's arithmetic is part of what was measured."""
    acc = str(r.get("accelerator", "?"))
    return f"{acc} ({r['gpu_precision']})" if r.get("gpu_precision") else acc


def _label(r: dict) -> str:
    name = Path(r.get("model", "?")).name
    dev = (r.get("device") or {}).get("model")
    return f"{name} [{r.get('accelerator')}{' @' + dev if dev else ''}]"


def to_markdown(report: dict, title: Optional[str] = None) -> str:
    """The side-by-side table plus spread, end-to-end, agreement, cross-check, errors and machine."""
    lines: List[str] = []
    if title:
        lines += [f"# {title}", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    results = report.get("results", [])
    for r in results:
        lat = r.get("latency_ms") or {}
        name = Path(r.get("model", "?")).name
        dev = (r.get("device") or {}).get("model")
        if dev:
            name += f" @ {dev}"
        lines.append("| " + " | ".join([
            name, r.get("variant") or "-", _f(r.get("size_mb")), _accelerator(r), _runtime(r),
            _delegation(r), _f(lat.get("p50")), _f(r.get("fps"), "{:.1f}"), _f(r.get("miou"), "{:.4f}")]) + " |")

    detail = [r for r in results if r.get("spread") or r.get("e2e_ms")]
    if detail:
        lines += ["", "Latency detail (ms): model-only mean/std/p90/p99, init, first inference, peak memory, "
                      "run-to-run spread of the round medians; end-to-end per frame.", "",
                  "| model | accel | mean | std | p90 | p99 | init | first | peak RSS (MB) | spread CV % / range % "
                  "| e2e total p50 | decode | resize | normalize | infer | post |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in detail:
            lat, sp, e = r.get("latency_ms") or {}, r.get("spread") or {}, r.get("e2e_ms") or {}
            lines.append("| " + " | ".join([
                Path(r["model"]).name, r["accelerator"], _f(lat.get("mean")), _f(lat.get("std")), _f(lat.get("p90")),
                _f(lat.get("p99")), _f(r.get("init_ms"), "{:.1f}"), _f(r.get("first_inference_ms"), "{:.1f}"),
                _f(r.get("peak_rss_mb"), "{:.0f}"),
                f"{_f(sp.get('cv_pct'), '{:.1f}')} / {_f(sp.get('range_pct'), '{:.1f}')}",
                _f(e.get("total_p50")), _f(e.get("decode")), _f(e.get("resize")), _f(e.get("normalize")),
                _f(e.get("infer")), _f(e.get("postprocess"))]) + " |")

    partial_xnn = [r for r in results if r.get("xnnpack_fully_delegated") is False]
    if partial_xnn:
        lines += ["", "CPU rows where LiteRT reports that not every op runs in XNNPACK (the rest use the "
                      "reference TFLite kernels): " + ", ".join(Path(r["model"]).name for r in partial_xnn)
                  + ". For int8 models with uint8 I/O these are the two uint8<->int8 QUANTIZE ops at the "
                    "edges (XNNPACK has no uint8 QUANTIZE; `edge-deeplab analyze` lists them): about 8% "
                    "of the default model's CPU latency on AVX2. `--io-type int8` keeps the whole graph "
                    "in XNNPACK; phone SDKs (MediaPipe, Task Library) need uint8 or float input."]

    agree = [r for r in results if r.get("agreement_vs_cpu")]
    if agree:
        lines += ["", "Output agreement with CPU on the same frame:", ""]
        for r in agree:
            a = r["agreement_vs_cpu"]
            if "error" in a:
                lines.append(f"- {_label(r)}: comparison failed: {a['error']}")
            else:
                extra = f", max |diff| {a['max_abs_diff']:.4g}" if a.get("max_abs_diff") is not None else ""
                if a.get("rel_max_diff") is not None:
                    extra += f" ({a['rel_max_diff'] * 100:.2f}% of the CPU output range)"
                if a.get("decidable_pct") is not None:
                    dec = a.get("argmax_agree_decidable_pct")
                    extra += (f"; on the {a['decidable_pct']:.1f}% of pixels whose CPU top-2 margin exceeds that "
                              f"difference: {'-' if dec is None else f'{dec:.2f}%'}")
                lines.append(f"- {_label(r)}: argmax agreement {a['argmax_agree_pct']:.2f}%{extra}")

    cc = [r for r in results if r.get("cross_check")]
    if cc:
        lines += ["", "Cross-check against `litert-benchmark` (same model and threads; it times only the "
                      "`run_by_name` call):", ""]
        for r in cc:
            c = r["cross_check"]
            if c.get("error"):
                lines.append(f"- {_label(r)}: litert-benchmark failed: {c['error']}")
                continue
            s = (f"- {_label(r)}: ours p50 {_f(c.get('ours_p50_ms'))} ms vs litert-benchmark median "
                 f"{_f(c.get('median_ms'))} ms ({'+' if (c.get('diff_pct') or 0) >= 0 else ''}{_f(c.get('diff_pct'), '{:.1f}')}%)")
            if c.get("explanation"):
                s += f". Beyond 15%: {c['explanation']}"
            lines.append(s)

    speed = report.get("int8_speedup")
    if speed:
        lines += ["", "int8 vs float32 (same run):", ""]
        for s in speed:
            lines.append(f"- {s['accelerator']}: {s['int8']} {_f(s['int8_fps'], '{:.2f}')} FPS vs {s['float32']} "
                         f"{_f(s['float32_fps'], '{:.2f}')} FPS -> {_f(s['speedup'], '{:.2f}')}x"
                         + (f" (by p50 {_f(s.get('speedup_p50'), '{:.2f}')}x, by fastest run "
                            f"{_f(s.get('speedup_min'), '{:.2f}')}x)" if s.get("speedup_p50") else ""))
        isa = (report.get("machine") or {}).get("isa")
        cpu = [s for s in speed if s.get("accelerator") == "cpu" and s.get("speedup")]
        if isa and cpu:
            from edge_deeplab.core.sysinfo import int8_speed_note

            lines += ["", int8_speed_note(isa, cpu[0]["speedup"])]

    if report.get("skipped"):
        lines += ["", "Skipped (accelerator not available here):", ""]
        lines += [f"- {Path(str(e.get('model'))).name} [{e.get('accelerator')}]: {e.get('error')}" for e in report["skipped"]]
    if report.get("errors"):
        lines += ["", "Errors:", ""]
        for e in report["errors"]:
            where = e.get("serial")
            lines.append(f"- {Path(str(e.get('model'))).name if e.get('model') else '(device)'} "
                         f"[{e.get('accelerator') or '-'}{' @' + where if where else ''}]: {e.get('error')}")

    m = report.get("machine") or {}
    if m:
        bits = [str(m.get(k)) for k in ("cpu", "platform") if m.get(k)]
        if m.get("logical_cpus"):
            bits.append(f"{m['logical_cpus']} logical CPUs")
        if m.get("memory_gb"):
            bits.append(f"{m['memory_gb']} GB RAM")
        if m.get("loadavg"):
            bits.append(f"load avg {m['loadavg'][0]} at start, {(m.get('loadavg_end') or ['?'])[0]} at end")
        lines += ["", "Machine: " + ", ".join(bits)]
        if m.get("isa"):
            from edge_deeplab.core.sysinfo import isa_line

            lines.append(f"CPU ISA: {isa_line(m['isa'])}")
        gpu = sorted({r.get("gpu_adapter") for r in results if r.get("gpu_adapter")})
        for g in gpu:
            soft = "software" in g.lower() or "llvmpipe" in g.lower()
            lines.append(f"GPU adapter: {g}" + (" - a software rasterizer on the CPU: GPU timings here mean nothing"
                                                 if soft else ""))
    devices = {}
    for r in results:
        d = r.get("device")
        if d and d.get("serial") not in devices:
            devices[d.get("serial")] = d
    for d in devices.values():
        lines.append(f"Device {d.get('serial')}: {d.get('manufacturer') or ''} {d.get('model') or '?'}, "
                     f"SoC {d.get('soc') or '?'}, Android {d.get('android_version') or '?'}".replace("  ", " "))
    return "\n".join(lines) + "\n"


def plot_report(report: dict, path) -> Path:
    """Two panels: latency distribution per model x accelerator (box plot of the timed runs; mean
    marked when only summary numbers exist, e.g. Android), and mIoU vs FPS (FPS alone when no mIoU)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report.get("results", [])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, max(4.0, 0.45 * len(results) + 2)))
    labels = [_label(r) for r in results]
    data = [r.get("latency_samples_ms") or [v for v in ((r.get("latency_ms") or {}).get("mean"),) if v is not None]
            for r in results]
    if results:
        ax1.boxplot([d if d else [float("nan")] for d in data], vert=False, showfliers=True)
        ax1.set_yticks(range(1, len(labels) + 1))
        ax1.set_yticklabels(labels, fontsize=8)
    ax1.set_xlabel("model-only latency per run (ms)")
    ax1.set_title("Latency distribution")
    ax1.grid(axis="x", alpha=0.3)

    with_miou = [r for r in results if r.get("miou") is not None and r.get("fps")]
    if with_miou:
        for r in with_miou:
            ax2.scatter(r["fps"], r["miou"])
            ax2.annotate(_label(r), (r["fps"], r["miou"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax2.set_xlabel("FPS (model only)")
        ax2.set_ylabel("mIoU")
        ax2.set_title("mIoU vs FPS")
    else:
        fps = [r.get("fps") or 0 for r in results]
        ax2.barh(range(len(fps)), fps)
        ax2.set_yticks(range(len(labels)))
        ax2.set_yticklabels(labels, fontsize=8)
        ax2.set_xlabel("FPS (model only)")
        ax2.set_title("FPS (no dataset given: mIoU vs FPS needs --dataset)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lower().lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return path


#: Formats :func:`plot_report` can write (matplotlib's Agg backend), by file suffix.
PLOT_FORMATS = ("png", "pdf", "svg", "svgz", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp", "pgf", "raw", "rgba")


def check_report_paths(json_path=None, markdown_path=None, plot_path=None) -> None:
    """Checks every requested report path before any model runs (one-line error naming the path):
    its folder can be written, it is not a directory, it is not asked twice, and the plot has a
    format matplotlib writes."""
    from edge_deeplab.core.atomic_io import check_writable
    from edge_deeplab.core.errors import EdgeDeeplabError

    seen = {}
    for flag, path in (("--json", json_path), ("--markdown", markdown_path), ("--plot", plot_path)):
        if not path:
            continue
        full = check_writable(path)
        if full in seen:
            raise EdgeDeeplabError(f"{seen[full]} and {flag} both name {path}")
        seen[full] = flag
    if plot_path:
        fmt = Path(plot_path).suffix.lower().lstrip(".")
        if fmt and fmt not in PLOT_FORMATS:  # no suffix: PNG
            raise EdgeDeeplabError(f"--plot {plot_path}: unknown image format {fmt!r}; "
                                   f"use .png, .svg or .pdf")
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:  # e.g. a tflite_runtime-only board
            raise EdgeDeeplabError(f"--plot {plot_path} needs Matplotlib, which is not installed "
                                   f"here: pip install matplotlib (or leave out --plot)")


def write_reports(report: dict, json_path=None, markdown_path=None, plot_path=None) -> List[Path]:
    """Writes whichever of JSON / Markdown / plot paths are given (atomically); returns them."""
    written = []
    if json_path:
        written.append(write_json_atomic(json_path, report))
    if markdown_path:
        written.append(write_text_atomic(markdown_path, to_markdown(report, title="edge-deeplab benchmark")))
    if plot_path:
        written.append(plot_report(report, plot_path))
    return written
