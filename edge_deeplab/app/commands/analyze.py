"""``edge-deeplab analyze``: size, I/O quantization, ops, float islands, GPU coverage of a .tflite."""

from __future__ import annotations

HELP = "inspect a .tflite: I/O, op histogram, float islands, LiteRT GPU coverage"
DESCRIPTION = ("Reports size, input/output dtype, shape and quantization, the op histogram, "
               "float islands in quantized models, and whether the real LiteRT GPU accelerator "
               "runs the whole graph (static rules only where no GPU accelerator starts).")


def add_arguments(p) -> None:
    from edge_deeplab.app.commands.common import positive_float

    p.add_argument("model", metavar="X.tflite", help="TFLite model")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU coverage probe")
    p.add_argument("--gpu-timeout", type=positive_float, default=600, help="seconds allowed for the GPU probe")


def run(args) -> int:
    import json

    from converters.analyze import analyze_tflite, format_report

    report = analyze_tflite(args.model, gpu=not args.no_gpu, timeout=args.gpu_timeout)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    if report.get("metadata_error"):  # the report is printed; the exit status says it is unusable
        import sys

        sys.stdout.flush()
        print(f"edge-deeplab analyze: error: {report['metadata_error']}", file=sys.stderr)
        return 1
    return 0
