"""The one tiny (untrained) DeepLab of the suite and its conversion, cached by the code that makes it.

``tiny_config()`` is 64x64, alpha 0.35, 3 classes (override any :class:`ModelConfig` field);
``tiny_model()`` builds it with a fixed seed; ``tiny_tflite()`` converts it once per code version
into pytest's cache (:func:`tests.support.trained.cache_dir`): ``kind="export"`` through the
toolkit's exporter (edge-clean, with metadata), ``kind="naive"`` through a plain
``TFLiteConverter`` (dilations become SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND: what the exporter avoids).

Untrained weights give near-tied logits: use it for structure (ops, I/O, metadata, errors), and the
trained model (:mod:`tests.support.trained`) wherever an argmax or a mIoU must mean something.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY = dict(input_size=(64, 64), num_classes=3, alpha=0.35)
#: What the tiny model's conversion depends on.
TINY_CODE = ("edge_deeplab/model", "edge_deeplab/core", "converters/export.py", "tests/support/tiny.py")


def tiny_config(**overrides):
    from edge_deeplab.model.config import ModelConfig

    return ModelConfig(**{**TINY, **overrides})


def tiny_model(seed: int = 0, **overrides):
    """``(model, config)``: the tiny DeepLab with seeded random weights."""
    from edge_deeplab.core._tf import keras
    from edge_deeplab.model.deeplab import build_model

    cfg = tiny_config(**overrides)
    keras.utils.set_random_seed(seed)
    return build_model(cfg), cfg


def convert_naive(model) -> bytes:
    """A plain ``TFLiteConverter`` conversion (no edge-clean patch)."""
    from edge_deeplab.core._tf import tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def tiny_tflite(pytestconfig, variant: str = "float32", kind: str = "export", **overrides) -> Path:
    """The tiny model converted (``kind`` ``export`` or ``naive``), built once per code version."""
    from tests.support.trained import cache_dir

    key = json.dumps({"variant": variant, "kind": kind, **overrides}, sort_keys=True, default=str)
    d = cache_dir(pytestconfig, "edge_deeplab_tiny", TINY_CODE, extra=key)
    path = d / f"tiny_{kind}_{variant}.tflite"
    if path.is_file() and path.stat().st_size > 0:
        return path
    from edge_deeplab.core.atomic_io import write_bytes_atomic

    model, cfg = tiny_model(**overrides)
    if kind == "naive":
        write_bytes_atomic(path, convert_naive(model))
    else:
        from converters.export import export_tflite

        export_tflite(model, path, variant, config=cfg, calibration_steps=4)
    return path
