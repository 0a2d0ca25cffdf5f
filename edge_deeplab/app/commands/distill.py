"""``edge-deeplab distill``: train a portrait student from a teacher on unlabeled images and video."""

from __future__ import annotations

import argparse
import json

HELP = "distill a student from a teacher segmenter on unlabeled images/videos (soft labels cached)"
DESCRIPTION = (
    "Label every frame of --images once with --teacher (RUN/labels: frames, soft labels, teacher "
    "hash and frame index per entry; reused by reruns and --resume), hold out the last part of "
    "each source (or --val-images), train a student on the soft labels with portrait augmentation "
    "(copy-paste of the teacher's people onto other frames), and write RUN/model.keras and "
    "RUN/distill_report.md/json/png (student vs teacher on the held-out frames). RUN is a train "
    "run: `qat RUN`, `export RUN`, `eval` take it.")

#: The recipe's defaults (the quickstart's 128x128 alpha-0.35 student and training recipe).
DEFAULTS = dict(input_size="128", alpha=0.35, output_stride=16, steps=800, batch_size=16, lr=5e-3,
                weight_decay=1e-5, warmup_steps=50, min_scale=0.75, max_scale=1.5,
                bn_momentum=0.99, recalibrate_batches=10, checkpoint_every=200)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edge_deeplab.app.commands.common import (
        non_negative_float,
        non_negative_int,
        positive_float,
        positive_int,
        unit_interval,
    )
    from edge_deeplab.model.config import STRATEGIES

    d = DEFAULTS
    s = p.add_argument_group("teacher and sources")
    s.add_argument("--teacher", required=True, help="segmentation .tflite, .keras or .h5")
    s.add_argument("--images", required=True, nargs="+", metavar="SRC",
                   help="image folders, images, videos or globs (quote globs)")
    s.add_argument("--val-images", nargs="+", default=(), metavar="SRC",
                   help="explicit held-out sources (then all of --images train)")
    s.add_argument("--val-fraction", type=unit_interval, default=0.2,
                   help="held-out share at the end of each source (time order for videos)")
    s.add_argument("--stride", type=positive_int, default=1, help="use every N-th video frame")
    s.add_argument("--classes", default="background,person",
                   help="student classes, matched to the teacher's labels by name")
    s.add_argument("--teacher-labels", default=None,
                   help="the teacher's class names when it carries none (one name for a "
                        "one-channel model: its foreground; default person)")
    s.add_argument("--teacher-range", default=None, choices=("0,1", "-1,1", "0,255"),
                   help="input pixel range of a teacher without normalization metadata")

    t = p.add_argument_group("student and training")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--resume", action="store_true",
                   help="continue RUN: an interrupted labelling pass, then training from its "
                        "last checkpoint")
    t.add_argument("--input-size", default=d["input_size"], help="student input, e.g. 128 or 160x128")
    t.add_argument("--alpha", type=positive_float, default=d["alpha"])
    t.add_argument("--output-stride", type=int, choices=(8, 16, 32), default=d["output_stride"])
    t.add_argument("--steps", type=positive_int, default=d["steps"])
    t.add_argument("--batch-size", type=positive_int, default=d["batch_size"])
    t.add_argument("--lr", type=positive_float, default=d["lr"])
    t.add_argument("--weight-decay", type=non_negative_float, default=d["weight_decay"])
    t.add_argument("--checkpoint-every", type=positive_int, default=d["checkpoint_every"])
    t.add_argument("--min-scale", type=positive_float, default=d["min_scale"])
    t.add_argument("--max-scale", type=positive_float, default=d["max_scale"])
    t.add_argument("--temperature", type=positive_float, default=1.0,
                   help="softmax temperature of the soft targets")
    t.add_argument("--hard-weight", type=unit_interval, default=0.0,
                   help="share of the loss from the teacher's hard labels")
    t.add_argument("--copy-paste", type=unit_interval, default=0.5,
                   help="probability of pasting another frame's person into an example")
    t.add_argument("--jitter", type=non_negative_float, default=1.0,
                   help="colour/exposure jitter, blur and noise strength (0: off)")
    t.add_argument("--seed", type=non_negative_int, default=0)
    t.add_argument("--strategy", default="default", choices=tuple(s for s in STRATEGIES
                                                                   if s != "multiworker"))


def build_configs(args):
    """``(ModelConfig, TrainConfig, DistillOptions)`` from parsed args."""
    from pathlib import Path

    from edge_deeplab.core.imaging import parse_size
    from edge_deeplab.model.config import ModelConfig, TrainConfig
    from edge_deeplab.model.presets import QUICKSTART_MODEL
    from edge_deeplab.training.distill import DistillOptions

    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    mc = ModelConfig(input_size=parse_size(args.input_size), num_classes=len(classes),
                     alpha=args.alpha, output_stride=args.output_stride, labels=classes,
                     aspp_filters=QUICKSTART_MODEL.aspp_filters,
                     low_level_filters=QUICKSTART_MODEL.low_level_filters,
                     decoder_filters=QUICKSTART_MODEL.decoder_filters)
    tc = TrainConfig(
        dataset="folder", data_dir=str((Path(args.out) / "labels").resolve()), split="train",
        val_split="val", steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        optimizer="adam", weight_decay=args.weight_decay, warmup_steps=min(
            DEFAULTS["warmup_steps"], args.steps // 10), min_scale=args.min_scale,
        max_scale=args.max_scale, bn_momentum=DEFAULTS["bn_momentum"],
        recalibrate_batches=DEFAULTS["recalibrate_batches"],
        checkpoint_every=args.checkpoint_every, seed=args.seed, strategy=args.strategy,
        log_every=10)
    opts = DistillOptions(temperature=args.temperature, hard_weight=args.hard_weight,
                          copy_paste=args.copy_paste, jitter=args.jitter)
    mc.validate()
    tc.validate()
    opts.validate()
    return mc, tc, opts


def run(args) -> int:
    from pathlib import Path

    from edge_deeplab.core.errors import EdgeDeeplabError
    from edge_deeplab.data.frame_sources import held_out_indices, require_decodable, resolve_sources
    from edge_deeplab.evaluation.distill_report import keras_predictor, write_report
    from edge_deeplab.runtime.labelling import label_sources
    from edge_deeplab.runtime.teacher import class_map, open_teacher, parse_range
    from edge_deeplab.training.distill import check_run_dir, distill_train

    out = Path(args.out)
    state = check_run_dir(out, resume=args.resume)
    mc, tc, opts = build_configs(args)
    teacher_labels = args.teacher_labels.split(",") if args.teacher_labels else None
    teacher = open_teacher(args.teacher, labels=teacher_labels,
                           normalization=parse_range(args.teacher_range))
    class_map(teacher.labels, mc.labels)
    sources = resolve_sources(args.images, stride=args.stride)
    val_sources = resolve_sources(args.val_images, stride=args.stride) if args.val_images else []
    require_decodable(list(sources) + list(val_sources))
    fraction = 0.0 if val_sources else args.val_fraction
    n_train = sum(s.count() - len(held_out_indices(s.count(), fraction)) for s in sources)
    if n_train < tc.batch_size:
        raise EdgeDeeplabError(
            f"{n_train} training frame(s) are fewer than a batch ({tc.batch_size}); add frames or "
            f"lower --batch-size")

    label_sources(teacher, sources, mc.labels, out / "labels", val_fraction=fraction,
                  val_sources=val_sources)
    extra = {"teacher": teacher.describe(), "sources": [str(s.path) for s in sources],
             "val_sources": [str(s.path) for s in val_sources], "val_fraction": fraction,
             "stride": args.stride}
    if args.resume and state != "trained":
        print("--resume: no training checkpoint yet; training starts at step 0", flush=True)
    result = distill_train(mc, tc, out, options=opts, resume=state == "trained",
                           extra_config=extra)
    report = write_report(keras_predictor(out / "model.keras"), out / "labels", mc.input_size, out,
                          extra={"teacher": teacher.describe(), "train_result": {
                              k: result[k] for k in ("best_miou", "best_step", "final_step",
                                                     "train_seconds", "train_frames",
                                                     "val_frames")}})
    o = report["overall"]
    print(json.dumps({"model_path": result["model_path"], "train_frames": result["train_frames"],
                      "val_frames": result["val_frames"], "person_iou": o["person_iou"],
                      "miou": o["miou"], "boundary_f": o["boundary_f"],
                      "train_seconds": result["train_seconds"]}))
    print(f"held-out person IoU vs teacher {o['person_iou'] if o['person_iou'] is not None else 0:.4f}; "
          f"report: {out / 'distill_report.md'}")
    return 0
