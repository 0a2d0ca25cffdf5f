"""``edge-deeplab eval``: mIoU of a Keras model, a .tflite model or a folder of predicted masks."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

from edge_deeplab.app.commands.common import positive_int
from edge_deeplab.data.datasets import DATASET_NAMES
from edge_deeplab.runtime.runners import ACCELERATORS, GPU_PRECISIONS, RUNTIMES

HELP = "mIoU of a Keras/.tflite model or a folder of predicted masks on a dataset split"
DESCRIPTION = (
    "Scores MODEL (a .keras file, a training run directory or a .tflite file) on a dataset split, "
    "or with --predictions DIR a folder of predicted index PNGs (same stems as the masks, palette "
    "or grayscale), e.g. outputs pulled from a phone. One confusion matrix is accumulated over the "
    "whole split (ignore label 255); mIoU is the mean IoU over classes present in the ground truth "
    "or the predictions. Images are letterboxed (aspect-preserving resize + pad) to the model input "
    "and predictions are scored at the full mask resolution.")


def _scales(text):
    try:
        vals = tuple(float(x) for x in str(text).replace(" ", "").split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated scales, got {text!r}") from None
    if not vals or any(not 0 < v < float("inf") for v in vals):
        raise argparse.ArgumentTypeError(f"scales must be positive, got {text!r}")
    return vals



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="model.keras, a run directory, or model.tflite (omit with --predictions)")
    p.add_argument("--predictions", metavar="DIR", default=None,
                   help="score a folder of predicted index PNGs instead of running a model")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="synthetic", choices=DATASET_NAMES)
    g.add_argument("--data-dir", default=None,
                   help="dataset root (VOCdevkit/VOC2012 or its parent; Cityscapes root; a folder "
                        "with images/ and masks/); synthetic: its cache directory")
    g.add_argument("--split", default="val", help="split to score (train, val, trainval, train_aug ...)")
    g.add_argument("--num-classes", type=positive_int, default=None,
                   help="folder datasets without labels.txt (else inferred from the masks)")
    g.add_argument("--binary", action="store_true",
                   help="folder masks are 0/255 (or 0/1): background 0, foreground 1")
    g.add_argument("--classes", default=None,
                   help="comma-separated class subset, e.g. background,person (others -> background)")
    g.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable/mismatched/invalid items (reports a count) instead of failing")
    g.add_argument("--max-images", type=positive_int, default=None, help="score only the first N images")
    g = p.add_argument_group("inference")
    g.add_argument("--input-size", default=None,
                   help="model input N or HxW (Keras models with a dynamic input only)")
    g.add_argument("--scales", type=_scales, default=(1.0,),
                   help="comma-separated inference scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75 "
                        "(softmax probabilities are averaged). Scale 1 fits the whole image into "
                        "the model input (letterbox); larger scales run overlapping input-sized "
                        "tiles, e.g. 4 scores a 2048x1024 Cityscapes frame at full resolution with "
                        "a 513 model")
    g.add_argument("--flip", action="store_true", help="also average left-right flipped predictions")
    g.add_argument("--crf", action="store_true",
                   help="dense-CRF refinement (pydensecrf if installed, else a built-in mean-field "
                        "approximation)")
    g.add_argument("--crf-backend", default="auto", choices=("auto", "pydensecrf", "builtin"))
    g.add_argument("--batch-size", type=positive_int, default=4, help="windows per forward pass (Keras)")
    g.add_argument("--accelerator", default="cpu", choices=ACCELERATORS,
                   help=".tflite: LiteRT accelerator")
    g.add_argument("--threads", type=positive_int, default=None, help=".tflite: CPU threads")
    g.add_argument("--gpu-precision", default="fp16", choices=GPU_PRECISIONS,
                   help=".tflite on --accelerator gpu: fp16 (the accelerator's default, as on "
                        "phones) or fp32")
    g.add_argument("--runtime", default="auto",
                   choices=RUNTIMES, help=".tflite runtime")
    g.add_argument("--qat", action="store_true",
                   help="score the run's quantization-aware Keras model (RUN/qat/model.h5)")
    g.add_argument("--resize-predictions", action="store_true",
                   help="--predictions: nearest-resize predictions whose size differs from the mask")
    g.add_argument("--allow-invalid-predictions", action="store_true",
                   help="score predicted ids outside [0, num_classes) as wrong (counted) instead "
                        "of failing")
    g = p.add_argument_group("output")
    g.add_argument("--json", metavar="OUT", default=None, help="write the metrics as JSON here")
    g.add_argument("--save-predictions", metavar="DIR", default=None,
                   help="write predicted index PNGs (VOC palette) named by stem; the folder is "
                        "replaced only once the whole split is scored")
    g.add_argument("--quiet", action="store_true", help="no progress lines, no table")


def run(args) -> int:
    from edge_deeplab.core.atomic_io import write_json_atomic
    from edge_deeplab.core.errors import EdgeDeeplabError
    from edge_deeplab.data import load_dataset
    from edge_deeplab.metrics import format_table

    if args.predictions and args.model:
        raise EdgeDeeplabError("give either MODEL or --predictions DIR, not both")
    if not args.predictions and not args.model:
        raise EdgeDeeplabError("give a MODEL (.keras, run directory or .tflite) or --predictions DIR")
    from edge_deeplab.app.commands.common import dataset_input, model_inputs, require_current_qat
    from edge_deeplab.core.outputs import Input, Output, atomic_dir, check_outputs

    # every output checked against every input before anything is scored
    check_outputs([Output(args.json, "--json", suffixes=(".json",)),
                   Output(args.save_predictions, "--save-predictions", folder=True)],
                  [*model_inputs(args.model), Input(args.predictions, "--predictions folder"),
                   dataset_input(args.dataset, args.data_dir)])
    if args.model and (args.qat or Path(args.model).parent.name == "qat"):
        require_current_qat(args.model)
    _refuse_portrait_head(args.model)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    ds = load_dataset(args.dataset, args.data_dir, args.split, num_classes=args.num_classes,
                      binary=args.binary, skip_bad=args.skip_bad, classes=classes)
    if args.max_images:
        ds = ds.subset(args.max_images)
    ds.validate_all()
    progress = None
    if not args.quiet:
        from edge_deeplab.evaluation.evaluate import print_progress as progress
        print(f"eval: {ds.name}/{ds.split}: {len(ds)} images, {ds.num_classes} classes"
              + (f" ({ds.note})" if ds.note else ""), file=sys.stderr)

    from edge_deeplab.evaluation.evaluate import evaluate

    # predictions fill a temporary sibling, swapped in only when the whole split is scored
    saving = atomic_dir(args.save_predictions) if args.save_predictions else nullcontext(None)
    with saving as save_dir:
        result = evaluate(args.predictions or args.model, ds, predictions=bool(args.predictions),
                          resize_predictions=args.resize_predictions, input_size=args.input_size,
                          qat=args.qat, batch_size=args.batch_size, accelerator=args.accelerator,
                          threads=args.threads, runtime=args.runtime, gpu_precision=args.gpu_precision,
                          scales=args.scales,
                          flip=args.flip, crf=args.crf, save_dir=save_dir,
                          progress=progress, crf_backend=args.crf_backend,
                      allow_invalid=args.allow_invalid_predictions)
    if not args.quiet:
        print(format_table(result, ds.labels))
    miou = result["miou"]
    what = result["model"] or f"predictions {args.predictions}"
    print(f"mIoU {'n/a' if miou is None else f'{miou * 100:.2f}%'} on {ds.name}/{ds.split} "
          f"({result['num_images']} images"
          + (f", {len(ds.skipped)} skipped" if ds.skipped else "") + f") - {what}")
    if result.get("invalid_predictions"):
        print(f"note: {result['invalid_predictions']} predicted pixels in "
              f"{result.get('invalid_prediction_files')} of {result['num_images']} images had "
              f"class ids outside "
              f"[0, {ds.num_classes}) and were scored as wrong (first: "
              f"{result.get('first_invalid_prediction')})")
    if args.json:
        write_json_atomic(args.json, result)
        if not args.quiet:
            print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _refuse_portrait_head(model) -> None:
    """One line, before the dataset is read: a ``--head person`` export has one channel (the person
    probability at 1/4 resolution), and eval scores one channel per class."""
    from pathlib import Path

    from edge_deeplab.core.contract.semantics import read_model_metadata
    from edge_deeplab.core.errors import EdgeDeeplabError

    if not model or Path(model).suffix.lower() != ".tflite" or not Path(model).is_file():
        return
    head = (read_model_metadata(model) or {}).get("head")
    if isinstance(head, dict) and head.get("head") == "person":
        raise EdgeDeeplabError(
            f"{Path(model).name} is a portrait-head export (a single channel: the person "
            f"probability at 1/{head.get('stride') or 4} resolution); eval scores one channel per "
            f"class: evaluate the full-head export of the same model")
