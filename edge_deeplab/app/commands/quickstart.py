"""``edge-deeplab quickstart``: the end-to-end main job (see :mod:`edge_deeplab.app.quickstart.run`)."""

HELP = "data -> train -> QAT -> export x5 -> analyze -> accuracy + speed -> report -> demo (resumable)"
DESCRIPTION = (
    "Generates the bundled procedural dataset, trains the float model, fine-tunes it with QAT, "
    "exports float32, float16, post-training int8, QAT int8 and w8a16 TFLite models, analyzes each (op "
    "set, float islands, real LiteRT GPU delegation) and the int8 models' per-layer error, measures "
    "mIoU on the held-out split and speed on CPU (and GPU where it starts), writes DIR/report.md, "
    "DIR/report.json and plots, and renders the portrait demo to DIR/demo.mp4. Rerunning with the "
    "same DIR resumes. Exits 1 when a check fails (float mIoU >= 0.80, QAT within 0.5 points of "
    "float, QAT >= PTQ, w8a16 >= PTQ - 0.15 points, every export but w8a16 fully on the GPU; --fast "
    "has its own floors), naming each failed check on its own line after the report is written.")


def add_arguments(p):
    p.add_argument("--out", default="quickstart", help="output directory (rerun to resume)")
    p.add_argument("--fast", action="store_true",
                   help="CI smoke run: tiny model, short training, same code path (~3 min)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--gpu", dest="gpu", action="store_true", default=None,
                   help="also benchmark on the GPU accelerator (default: when it starts)")
    g.add_argument("--no-gpu", dest="gpu", action="store_false", help="CPU benchmarks only")


def run(args) -> int:
    import sys

    from edge_deeplab.app.quickstart.run import run_quickstart
    from edge_deeplab.core.outputs import Output, check_outputs

    check_outputs([Output(args.out, "--out", folder=True)])  # a file, read-only: before any work
    report = run_quickstart(args.out, fast=args.fast, gpu=args.gpu)
    return report_checks(report, file=sys.stderr)


def report_checks(report: dict, file=None) -> int:
    """Prints the mIoU line and, last, one line per failed check; the exit status (1: a check failed).

    The report is written before this runs, so a failed check never loses it.
    """
    import sys

    from edge_deeplab.app.quickstart.checks import failed_checks

    acc = report["accuracy"]
    print("mIoU: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in acc.items()))
    failed = failed_checks(report)
    for line in failed:
        print(f"edge-deeplab quickstart: check failed: {line}", file=file or sys.stderr)
    return 1 if failed else 0
