"""Builds the float32 and full-int8 exports of a DeepLab v3+ / MobileNet-v2 config for benchmarking.

Exports through :func:`converters.export.export_tflite` (edge-clean graph, int8 calibrated on
procedural scenes). Weights are random: latency does not depend on them, accuracy does (use trained
checkpoints for mIoU).

Example:
    python -m benchmarks.make_reference_models --out /tmp/ref --input-size 512
    # -> /tmp/ref/deeplab_512_float32.tflite, /tmp/ref/deeplab_512_int8.tflite
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_reference_models(out_dir, input_size=(512, 512), num_classes=21, alpha=1.0, output_stride=16,
                           variants=("float32", "int8")) -> dict:
    """Writes ``deeplab_<H>_<variant>.tflite`` for each variant and returns ``{variant: path}``.

    Args:
        out_dir: destination folder.
        input_size: ``(H, W)``.
        num_classes, alpha, output_stride: the :class:`~edge_deeplab.model.config.ModelConfig` fields.
        variants: any of ``float32``, ``float16``, ``dynamic``, ``int8``.
    """
    from converters.export import export_tflite
    from edge_deeplab.model.config import ModelConfig
    from edge_deeplab.model.deeplab import build_model

    cfg = ModelConfig(input_size=input_size, num_classes=num_classes, alpha=alpha, output_stride=output_stride)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{cfg.input_size[0]}" if cfg.input_size[0] == cfg.input_size[1] else f"{cfg.input_size[0]}x{cfg.input_size[1]}"
    model = build_model(cfg)
    paths = {}
    for variant in variants:
        dest = out / f"deeplab_{tag}_{variant}.tflite"
        # int8 calibrates on generated scenes; I/O stays uint8 as users deploy it.
        export_tflite(model, dest, variant, config=cfg)
        paths[variant] = dest
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--input-size", type=int, default=512)
    p.add_argument("--num-classes", type=int, default=21)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--output-stride", type=int, default=16)
    p.add_argument("--variants", default="float32,int8")
    a = p.parse_args(argv)
    paths = build_reference_models(a.out, (a.input_size, a.input_size), a.num_classes, a.alpha,
                                   a.output_stride, tuple(a.variants.split(",")))
    for k, v in paths.items():
        print(f"{k}: {v} ({Path(v).stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
