"""``edge-deeplab qat RUN``: quantization-aware fine-tuning of a trained run (tfmot, whole graph)."""

from __future__ import annotations

import argparse
import json

HELP = "quantization-aware training of a trained run (RUN/qat/model.h5, for --variant qat-int8)"
DESCRIPTION = (
    "Fine-tune RUN/model.keras with tensorflow-model-optimization over the whole graph (backbone, "
    "atrous ASPP, image pooling, decoder, upsampling, concatenations; BatchNorm folds), on the "
    "run's own training data (RUN/train_config.json). Default recipe: activation ranges calibrated "
    "on a few batches, then the float learning rate / 100 with poly decay, no warm-up, BatchNorm "
    "statistics frozen. Writes RUN/qat/model.h5 (+ model.json, qat_result.json) and resumable "
    "checkpoints in RUN/qat/checkpoints. Prints the float and the QAT model's IoU per class on "
    "the run's validation split and warns when QAT loses a class. Export with `edge-deeplab export RUN --variant qat-int8`.")

# Mirrors edge_deeplab.training.qat's defaults (kept literal so --help does not import TensorFlow).
_DEFAULT_STEPS = 300
_DEFAULT_CHECKPOINT_EVERY = 100


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edge_deeplab.app.commands.common import non_negative_int, positive_float, positive_int

    p.add_argument("run", metavar="RUN", help="training run directory (from `edge-deeplab train`)")
    p.add_argument("--steps", type=positive_int, default=_DEFAULT_STEPS, help="fine-tuning steps")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default: the float run's lr / 100)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default: the float run's")
    p.add_argument("--resume", action="store_true", help="continue from RUN/qat/checkpoints")
    p.add_argument("--checkpoint-every", type=positive_int, default=_DEFAULT_CHECKPOINT_EVERY,
                   help="steps between checkpoints")
    p.add_argument("--no-freeze-bn", action="store_true",
                   help="keep updating BatchNorm statistics during QAT (default: frozen)")
    p.add_argument("--calibration-batches", type=non_negative_int, default=8,
                   help="batches that initialize the activation ranges (0: tfmot's [-6, 6])")
    p.add_argument("--no-eval", action="store_true", help="skip the final val-split mIoU")
    p.add_argument("--json", default=None, help="also write the result dict to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from pathlib import Path

    from edge_deeplab.core.errors import EdgeDeeplabError
    from edge_deeplab.core.outputs import Input, Output, check_outputs
    from edge_deeplab.core.run_state import require_unlocked, run_lock, stale_origin
    from edge_deeplab.training.qat import run_qat

    check_outputs([Output(args.json, "--json", suffixes=(".json",))], [Input(args.run, "run")])
    run = Path(args.run)
    require_unlocked(run)  # a `train` or `qat` writing this run: say so before any work
    if args.resume and run.is_dir():  # nothing to resume: say so before any work
        from edge_deeplab.training.train import require_resumable

        require_resumable(run / "qat", run / "qat" / "checkpoints", what="QAT")
        done = _finished(run, args.steps)
        if done is not None and not stale_origin(run / "qat", run / "model.keras"):
            import sys

            print(f"{run / 'qat'} is already complete ({done['final_step']}/{args.steps} steps); "
                  f"nothing to do (nothing was changed)", file=sys.stderr)
            if args.quiet:
                print(json.dumps(done))
            return 0
    if args.calibration_batches < 0:
        raise EdgeDeeplabError(f"calibration batches must be >= 0, got {args.calibration_batches}")
    if not run.is_dir():
        raise EdgeDeeplabError(f"run directory not found: {run}")
    with run_lock(run, "qat"):  # one writer per run: not beside a `train` into it, nor another qat
        res = run_qat(args.run, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                      resume=args.resume, checkpoint_every=args.checkpoint_every,
                      freeze_bn=not args.no_freeze_bn, calibration_batches=args.calibration_batches,
                      evaluate=not args.no_eval, verbose=0 if args.quiet else 1)
    if args.json:
        from edge_deeplab.core.atomic_io import write_json_atomic

        write_json_atomic(args.json, res)
    if args.quiet:
        print(json.dumps(res))
    return 0


def _finished(run, steps):
    """``RUN/qat/qat_result.json`` when it records a QAT of ``steps`` steps, finished with its
    model in place; else None."""
    from pathlib import Path

    p = Path(run) / "qat" / "qat_result.json"
    try:
        res = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    model = p.parent / Path(str(res.get("model_path", ""))).name
    if res.get("final_step") == steps and model.is_file():
        return res
    return None
