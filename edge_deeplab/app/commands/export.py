"""``edge-deeplab export``: Keras model or run dir -> edge-clean .tflite (+ metadata sidecar)."""

from __future__ import annotations

from edge_deeplab.core.contract import variants
from edge_deeplab.core.contract.variants import EXPORT_OUTPUTS, IO_TYPES
from edge_deeplab.data.datasets import DATASET_NAMES

HELP = f"convert a Keras model / run dir to TFLite ({', '.join(variants.names())})"
DESCRIPTION = ("Converts to TFLite with one dilated DEPTHWISE_CONV_2D per atrous conv and "
               "BatchNorm folded. int8 is full-integer PTQ calibrated on --calibration-dataset "
               "(else generated scenes); qat-int8 converts a run's quantization-aware model; w8a16 (int8 "
               "weights, int16 activations) and --keep-float (selective precision for int8/w8a16) "
               "go through litert-quantizer. "
               "Writes X.tflite atomically with embedded metadata and an X.json sidecar.")


def add_arguments(p) -> None:
    from edge_deeplab.app.commands.common import positive_int

    p.add_argument("model", metavar="MODEL.keras|RUN", help="Keras model file or run directory")
    p.add_argument("--variant", default="float32",
                   help="one of " + ", ".join(variants.names()))
    p.add_argument("--out", required=True, help="output .tflite path")
    p.add_argument("--io-type", default=None, choices=IO_TYPES,
                   help="input/output type (integer variants; default: "
                        + "; ".join(f"{v.name} {'/'.join(v.io_types)}" for v in variants.TABLE
                                    if v.integer)
                        + " (the first; int8 for int8 with --keep-float); only the TFLite "
                          "interpreter runtime feeds int16 I/O)")
    p.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                   help="/".join(variants.where(keep_float=True)) + ": keep the Keras layers matching PATTERN (glob or regex over "
                        "layer names, e.g. 'block_5_*' or 'aspp.*') in float; repeatable")
    p.add_argument("--normalize-in-graph", action="store_true",
                   help="the model takes raw 0..255 pixels (normalization as a 1x1 depthwise conv)")
    p.add_argument("--output", default="logits", choices=EXPORT_OUTPUTS,
                   help="logits at input size, or an int32 class map (ARG_MAX)")
    p.add_argument("--head", default="full", choices=("full", "person"),
                   help="full: the model's C-class logits at input size; person: the person "
                        "probability at the decoder's 1/4 resolution (one channel; the app "
                        "upsamples it: no full-size resize or argmax on the phone)")
    p.add_argument("--calibration-dataset", default=None, metavar="NAME",
                   help="/".join(variants.where(calibrated=True)) + ": calibrate on this dataset ("
                        + ", ".join(DATASET_NAMES) + ")")
    p.add_argument("--data-dir", default=None, help="dataset root for --calibration-dataset")
    p.add_argument("--calibration-split", default="train")
    p.add_argument("--calibration-steps", type=positive_int, default=100, help="calibration images")
    p.add_argument("--labels", default=None, metavar="A,B,...|FILE",
                   help="class names written into the model's metadata (comma-separated, or a "
                        "text file with one per line); default: the model's config")


def run(args) -> int:
    from edge_deeplab.core.errors import EdgeDeeplabError

    row = variants.get(args.variant)  # one-line error for an unknown variant
    from pathlib import Path

    from edge_deeplab.app.commands.common import dataset_input, model_inputs, require_current_qat
    from edge_deeplab.core.outputs import Output, check_outputs

    # Everything a user can get wrong is checked here, before the seconds of conversion.
    check_outputs([Output(args.out, "--out", suffixes=(".tflite",))],
                  [*model_inputs(args.model),
                   dataset_input(args.calibration_dataset, args.data_dir)])
    if row.qat:
        require_current_qat(args.model)
    if args.calibration_dataset:
        from edge_deeplab.data import load_dataset

        if not row.calibrated:
            raise EdgeDeeplabError(f"--calibration-dataset applies to the calibrated variants "
                                   f"({', '.join(variants.where(calibrated=True))}), not {args.variant}")
        load_dataset(args.calibration_dataset, args.data_dir, args.calibration_split)
    if row.qat:
        src = Path(args.model)
        if not src.exists():
            raise EdgeDeeplabError(f"model not found: {src}")
    else:
        from edge_deeplab.model.model_io import resolve_model_path

        resolve_model_path(args.model)  # one-line errors before importing TensorFlow

    labels = _parse_labels(args.labels)
    if labels is not None:
        _check_labels_against_sidecar(labels, args.model, row.qat)

    from converters.export import export_tflite

    info = export_tflite(args.model, args.out, args.variant, io_type=args.io_type, labels=labels,
                         normalize_in_graph=args.normalize_in_graph, output=args.output,
                         calibration_dataset=args.calibration_dataset, data_dir=args.data_dir,
                         calibration_split=args.calibration_split,
                         calibration_steps=args.calibration_steps,
                         keep_float=args.keep_float, head=args.head)
    ex = info["metadata"]["export"]
    i, o = ex["input"], ex["output_tensor"]
    print(f"wrote {info['path']} ({info['size_bytes'] / 1e6:.2f} MB, {info['variant']}; input "
          f"{i['dtype']}{i['shape']}, output {o['dtype']}{o['shape']} {info['metadata']['output']})"
          + (f" and {info['sidecar']}" if info["sidecar"] else ""))
    if ex.get("widened_ranges"):
        from converters.litert_quant import MIN_INT16_RANGE

        print(f"  widened {ex['widened_ranges']} activation ranges narrower than "
              f"+-{MIN_INT16_RANGE:g} to it (TFLite's int16 kernels refuse narrower ones)")
    kf = ex.get("keep_float")
    if kf:
        print(f"  kept float ({ex.get('float_ops')} ops): {', '.join(kf['layers'])}")
    rp = ex.get("raw_pixels")
    if rp:
        print(f"  {rp['note']}")
    return 0


def _parse_labels(value):
    """``--labels`` -> list of names (file with one per line, or comma-separated), or None."""
    from pathlib import Path

    from edge_deeplab.core.errors import EdgeDeeplabError

    if value is None:
        return None
    p = Path(value)
    if p.is_dir():
        raise EdgeDeeplabError(f"--labels {value} is a directory; give A,B,... or a text file "
                               f"with one name per line")
    if p.is_file():
        try:
            names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as e:
            raise EdgeDeeplabError(f"cannot read --labels file {p}: {e}") from None
        names = [n for n in names if n]
    elif "," not in str(value) and ("/" in str(value) or p.suffix.lower() in (".txt", ".csv")):
        raise EdgeDeeplabError(f"--labels file not found: {value}")
    else:
        names = [n.strip() for n in str(value).split(",")]
    from edge_deeplab.data.labels import check_label_names

    return list(check_label_names(names, f"--labels {value!r}"))


def _check_labels_against_sidecar(labels, model, qat: bool) -> None:
    """One-line error before TensorFlow loads when the model's config says another class count."""
    from edge_deeplab.core.errors import EdgeDeeplabError
    from edge_deeplab.model.model_io import load_metadata, resolve_model_path

    try:
        meta = load_metadata(resolve_model_path(model, prefer_qat=qat)) or {}
    except EdgeDeeplabError:
        return  # export_tflite reports the model problem itself
    n = (meta.get("config") or {}).get("num_classes")
    if n is not None and len(labels) != int(n):
        raise EdgeDeeplabError(f"--labels gives {len(labels)} names but the model has {n} classes")
