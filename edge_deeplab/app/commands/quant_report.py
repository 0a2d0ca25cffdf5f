"""``edge-deeplab quant-report``: per-layer error of a quantized .tflite against its float reference."""

from __future__ import annotations

from edge_deeplab.data.datasets import DATASET_NAMES

HELP = "per-layer quantization error (SNR, relative MSE, cosine) against the float .tflite"
DESCRIPTION = ("Runs QUANT.tflite and its float reference on calibration images (a dataset when "
               "given, else generated scenes), compares every op output by tensor name (int8/int16 "
               "tensors dequantized), prints the layers that lose the most SNR, and writes the "
               "per-layer JSON and an error-vs-depth plot.")


def add_arguments(p) -> None:
    p.add_argument("model", metavar="QUANT.tflite", help="quantized model")
    p.add_argument("--reference", required=True, metavar="FLOAT.tflite",
                   help="the float32 export the quantized model was made from")
    p.add_argument("--dataset", default=None, choices=DATASET_NAMES,
                   help="images from this dataset; else generated scenes")
    p.add_argument("--data-dir", default=None, help="dataset root for --dataset")
    p.add_argument("--split", default="train", help="dataset split")
    p.add_argument("--images", type=int, default=8, help="number of images")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write the full report")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="write SNR against depth")
    p.add_argument("--top", type=int, default=5, help="worst layers to print and name")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads")


def run(args) -> int:
    from edge_deeplab.core.errors import EdgeDeeplabError

    if args.images < 1:
        raise EdgeDeeplabError(f"--images must be >= 1, got {args.images}")
    if args.top < 0:
        raise EdgeDeeplabError(f"--top must be >= 0, got {args.top}")
    from edge_deeplab.app.commands.common import dataset_input, model_inputs
    from edge_deeplab.core.outputs import Output, check_outputs

    # suffixes, places that cannot be written, outputs that are inputs: before any work
    check_outputs([Output(args.json, "--json", suffixes=(".json",)),
                   Output(args.plot, "--plot", suffixes=(".png",))],
                  [*model_inputs(args.model), *model_inputs(args.reference),
                   dataset_input(args.dataset, args.data_dir)])

    from pathlib import Path

    from converters.quant_report import (
        check_pair,
        format_worst,
        model_input_size,
        plot_report,
        quant_report,
        report_images,
    )

    for what, path in (("quantized model", args.model), ("reference model", args.reference)):
        if not Path(path).is_file():
            raise EdgeDeeplabError(f"{what} not found: {path}")
    check_pair(Path(args.model).read_bytes(), Path(args.reference).read_bytes(),
               Path(args.model).name, Path(args.reference).name)  # one line before any work
    size = model_input_size(args.model)
    images = report_images(size, args.dataset, data_dir=args.data_dir, split=args.split,
                           n=args.images)
    report = quant_report(args.model, args.reference, images, max_images=args.images,
                          top=args.top, threads=args.threads)
    print(format_worst(report))
    if args.json:
        from edge_deeplab.core.atomic_io import write_json_atomic

        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    if args.plot:
        plot_report(report, args.plot, top=args.top)
        print(f"wrote {args.plot}")
    return 0
