"""``edge-deeplab bench``: latency, FPS, memory, delegation and mIoU of .tflite models, side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_deeplab.app.commands.common import (
    floats_1_or_3,
    non_negative_int,
    positive_float,
    positive_int,
    std_floats,
)
from edge_deeplab.data.datasets import DATASET_NAMES
from edge_deeplab.runtime.runners import GPU_PRECISIONS, RUNTIMES

HELP = "benchmark .tflite models (FPS, latency, memory, delegation, mIoU) locally or on Android via adb"
DESCRIPTION = (
    "Benchmarks each MODEL x accelerator in an isolated worker process (a bad or crashing model costs only "
    "its own row) and prints a side-by-side table. Latency is timed up to the output being readable "
    "(LiteRT's GPU run call returns early). Exit status is non-zero when any model failed.")


_floats, _std = floats_1_or_3, std_floats  # --mean/--std: one home (common.py), shared with `demo`


def _seconds(text):
    """``--min-seconds``: a number >= 0."""
    import math

    try:
        v = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL.tflite", help="models to benchmark")
    p.add_argument("--accelerator", default="cpu",
                   help="cpu, gpu, npu, all, or a comma list (all: unavailable ones are skipped, not errors)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: the runtime's)")
    p.add_argument("--warmup", type=non_negative_int, default=5,
                   help="untimed warm-up runs (locally at least one runs: it is reported as the first inference)")
    p.add_argument("--runs", type=positive_int, default=50, help="timed runs in total (split over --rounds)")
    p.add_argument("--min-seconds", type=_seconds, default=0.0, help="minimum total timed duration")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="repeat the timed block this many times; the spread of the round medians is reported")
    g = p.add_argument_group("accuracy")
    g.add_argument("--dataset", default=None, help=f"score mIoU on this dataset ({', '.join(DATASET_NAMES)})")
    g.add_argument("--data-dir", default=None, help="dataset root")
    g.add_argument("--split", default="val")
    g.add_argument("--max-images", type=positive_int, default=None, help="score only the first N images")
    g = p.add_argument_group("runtime and input")
    g.add_argument("--runtime", default="auto", choices=RUNTIMES)
    g.add_argument("--gpu-precision", default="fp16", choices=GPU_PRECISIONS,
                   help="arithmetic of the LiteRT GPU accelerator's rows: fp16 (its default, as on "
                        "phones) or fp32 (slower; an int8 model's emulated quantization then "
                        "follows the CPU's integer kernels more closely)")
    g.add_argument("--delegate", default=None, metavar="LIB.so",
                   help="external TFLite delegate (Interpreter runtime); benchmarked beside plain CPU")
    g.add_argument("--mean", type=_floats, default=None, help="input mean (one or 3 values) when the model has no metadata")
    g.add_argument("--std", type=_std, default=None, help="input std (one or 3 values) when the model has no metadata")
    g.add_argument("--e2e-runs", type=non_negative_int, default=10, help="end-to-end frames to time (0: skip)")
    g.add_argument("--frame", default=None, help="image for the end-to-end timing (default: a synthetic 1280x720)")
    g.add_argument("--cross-check", action="store_true",
                   help="also run litert-benchmark on CPU rows and explain differences beyond 15%%")
    g.add_argument("--no-agreement", action="store_true", help="skip the accelerator-vs-CPU output comparison")
    g.add_argument("--timeout", type=positive_float, default=1800, help="seconds per model x accelerator")
    g = p.add_argument_group("android")
    g.add_argument("--adb", action="store_true", help="run on Android devices with benchmark_model instead")
    g.add_argument("--serial", action="append", nargs="+", default=None, metavar="S",
                   help="device serial(s) (default: every attached device); devices run in parallel")
    g.add_argument("--benchmark-binary", default=None, metavar="PATH",
                   help="the official TFLite benchmark_model binary for the device's ABI")
    g.add_argument("--adb-path", default=None, help="adb executable (default: $ADB or adb on PATH)")
    g = p.add_argument_group("output")
    g.add_argument("--json", default=None, metavar="OUT", help="write the full report as JSON")
    g.add_argument("--markdown", default=None, metavar="OUT", help="write the report as Markdown")
    g.add_argument("--plot", default=None, metavar="OUT.png", help="latency distribution + mIoU-vs-FPS plot")
    g.add_argument("--quiet", action="store_true", help="no progress lines")


def _say(msg):
    print(msg, file=sys.stderr, flush=True)


def run(args) -> int:
    from benchmarks.harness import int8_speedup, run_benchmarks
    from benchmarks.report import check_report_paths, to_markdown, write_reports
    from edge_deeplab.core.errors import EdgeDeeplabError

    progress = None if args.quiet else _say
    from edge_deeplab.app.commands.common import dataset_input, model_inputs
    from edge_deeplab.core.outputs import Output, check_outputs

    # every output is checked before any model runs, against every input too
    check_outputs([Output(args.json, "--json", suffixes=(".json",)),
                   Output(args.markdown, "--markdown", suffixes=(".md", ".markdown")),
                   Output(args.plot, "--plot")],
                  [i for m in args.models for i in model_inputs(m)]
                  + [dataset_input(getattr(args, "dataset", None), getattr(args, "data_dir", None))])
    check_report_paths(args.json, args.markdown, args.plot)
    if args.adb:
        from benchmarks.adb import device_report

        if not args.benchmark_binary:
            raise EdgeDeeplabError("--adb needs --benchmark-binary PATH (the official TFLite benchmark_model)")
        serials = [s for group in (args.serial or []) for s in group]
        report = device_report(serials, args.models, args.benchmark_binary, accelerators=args.accelerator,
                               threads=args.threads, warmup=args.warmup, runs=args.runs,
                               min_seconds=args.min_seconds, adb=args.adb_path, progress=progress)
    else:
        if args.adb_path or args.serial or args.benchmark_binary:
            raise EdgeDeeplabError("--serial/--benchmark-binary/--adb-path need --adb")
        report = run_benchmarks(
            args.models, accelerators=args.accelerator, threads=args.threads, warmup=args.warmup, runs=args.runs,
            min_seconds=args.min_seconds, rounds=args.rounds, dataset=args.dataset, data_dir=args.data_dir,
            split=args.split, max_images=args.max_images, runtime=args.runtime, delegate=args.delegate,
            mean=args.mean, std=args.std, e2e_runs=args.e2e_runs, frame=args.frame,
            cross_check=args.cross_check, agreement=not args.no_agreement, timeout=args.timeout, progress=progress,
            gpu_precision=args.gpu_precision)
    errors = [e for e in report["errors"] if not str(e.get("error", "")).startswith("not run: ")]
    if report["results"]:
        speed = int8_speedup(report)
        if speed:
            report["int8_speedup"] = speed
        print(to_markdown(report), end="")
        write_reports(report, args.json, args.markdown, args.plot)
        seen = set()
        for r in report["results"]:
            note = r.get("output_note")
            if note and (r.get("model"), note) not in seen:
                seen.add((r.get("model"), note))
                _say(f"edge-deeplab bench: note: {note}")
    # one line per failed model x accelerator; a model that failed on CPU was not run elsewhere
    for e in errors:
        name, msg = Path(str(e.get("model"))).name, str(e.get("error"))
        if msg.startswith(f"{name}: "):
            msg = msg[len(name) + 2:]
        _say(f"edge-deeplab bench: error: {name} [{e.get('accelerator')}]: {msg}")
    if not report["results"]:
        if not errors:
            _say("edge-deeplab bench: error: nothing was benchmarked")
        return 1  # nothing measured: no table, and earlier reports at --json/--markdown/--plot are kept
    return 1 if report["errors"] else 0
