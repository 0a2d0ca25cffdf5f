"""``edge-deeplab export``: Keras model or run dir -> edge-clean .tflite (+ metadata sidecar)."""

from __future__ import annotations

HELP = "convert a Keras model / run dir to TFLite (float32, float16, dynamic, int8, qat-int8)"
DESCRIPTION = ("Converts to TFLite with one dilated DEPTHWISE_CONV_2D per atrous conv and "
               "BatchNorm folded. int8 is full-integer PTQ calibrated on --calibration-dataset "
               "(else generated scenes); qat-int8 converts a run's quantization-aware model. "
               "Writes X.tflite atomically with embedded metadata and an X.json sidecar.")

VARIANTS = ("float32", "float16", "dynamic", "int8", "qat-int8")


def add_arguments(p) -> None:
    from edge_deeplab.commands._common import positive_int

    p.add_argument("model", metavar="MODEL.keras|RUN", help="Keras model file or run directory")
    p.add_argument("--variant", default="float32",
                   help="one of " + ", ".join(VARIANTS))
    p.add_argument("--out", required=True, help="output .tflite path")
    p.add_argument("--io-type", default=None, choices=("float32", "uint8", "int8"),
                   help="input/output type (integer variants; default uint8 for them, float32 "
                        "otherwise)")
    p.add_argument("--normalize-in-graph", action="store_true",
                   help="the model takes raw 0..255 pixels (normalization as a 1x1 depthwise conv)")
    p.add_argument("--output", default="logits", choices=("logits", "classmap"),
                   help="logits at input size, or an int32 class map (ARG_MAX)")
    p.add_argument("--calibration-dataset", default=None, metavar="NAME",
                   help="int8: calibrate on this dataset (voc, cityscapes, folder, synthetic)")
    p.add_argument("--data-dir", default=None, help="dataset root for --calibration-dataset")
    p.add_argument("--calibration-split", default="train")
    p.add_argument("--calibration-steps", type=positive_int, default=100, help="calibration images")


def run(args) -> int:
    from edge_deeplab.errors import EdgeDeeplabError

    if args.variant not in VARIANTS:
        raise EdgeDeeplabError(f"unknown variant {args.variant!r}; choose one of "
                               f"{', '.join(VARIANTS)}")
    if not str(args.out).endswith(".tflite"):
        raise EdgeDeeplabError(f"--out must end in .tflite, got {args.out}")
    from pathlib import Path

    from edge_deeplab.io_utils import check_writable

    # Everything a user can get wrong is checked here, before the seconds of conversion.
    check_writable(args.out, "--out")
    if args.calibration_dataset:
        from edge_deeplab.data import load_dataset

        if args.variant != "int8":
            raise EdgeDeeplabError(f"--calibration-dataset applies to --variant int8 (post-training "
                                   f"calibration), not {args.variant}")
        load_dataset(args.calibration_dataset, args.data_dir, args.calibration_split)
    if args.variant == "qat-int8":
        src = Path(args.model)
        if not src.exists():
            raise EdgeDeeplabError(f"model not found: {src}")
    else:
        from edge_deeplab.model_io import resolve_model_path

        resolve_model_path(args.model)  # one-line errors before importing TensorFlow

    from converters.export import export_tflite

    info = export_tflite(args.model, args.out, args.variant, io_type=args.io_type,
                         normalize_in_graph=args.normalize_in_graph, output=args.output,
                         calibration_dataset=args.calibration_dataset, data_dir=args.data_dir,
                         calibration_split=args.calibration_split,
                         calibration_steps=args.calibration_steps)
    ex = info["metadata"]["export"]
    i, o = ex["input"], ex["output_tensor"]
    print(f"wrote {info['path']} ({info['size_bytes'] / 1e6:.2f} MB, {info['variant']}; input "
          f"{i['dtype']}{i['shape']}, output {o['dtype']}{o['shape']} {info['metadata']['output']})"
          + (f" and {info['sidecar']}" if info["sidecar"] else ""))
    rp = ex.get("raw_pixels")
    if rp:
        print(f"  {rp['note']}")
    return 0
