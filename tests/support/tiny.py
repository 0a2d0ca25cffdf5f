"""The one builder of the suite's (untrained) DeepLab models and their one cached converter.

* :func:`seeded_model` builds any :class:`ModelConfig` with a fixed seed (``build_model``'s other
  arguments, e.g. ``backbone_weights``, pass through): every test model is built here, so a test
  whose subject is a particular config (output stride 8, alpha 1.0, 21 classes, ...) keeps it.
* :func:`tiny_config` is the tiny model: 64x64, alpha 0.35, 3 classes (override any field).
* :func:`tiny_model` builds it with a weight recipe (:data:`WEIGHTS`): ``random`` (the seeded
  initialization), ``calibrated`` or ``colour`` (:mod:`tests.support.segmentation_models`, the one
  module of weight recipes).
* :func:`tiny_tflite` converts it once per code version into pytest's cache
  (:func:`tests.support.trained.cache_dir`, keyed by :data:`TINY_CODE`, the weights, variant, kind,
  export options and config): ``kind="export"`` through the toolkit's exporter (edge-clean, with
  metadata; ``qat-int8`` quantizes the model first), ``kind="naive"`` through a plain
  ``TFLiteConverter`` (dilations become SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND: what the exporter avoids).

Untrained weights give near-tied logits: use ``random`` for structure (ops, I/O, metadata, errors),
a recipe where an argmax must follow the image, and the trained model (:mod:`tests.support.trained`)
wherever an argmax or a mIoU must mean something.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY = dict(input_size=(64, 64), num_classes=3, alpha=0.35)
#: The weight recipes :func:`tiny_model` knows.
WEIGHTS = ("random", "calibrated", "colour")
#: What the tiny model's conversion depends on.
TINY_CODE = ("edge_deeplab/__init__.py", "edge_deeplab/model", "edge_deeplab/core", "edge_deeplab/data",
             "edge_deeplab/training/qat.py", "converters/export.py", "converters/calibration.py",
             "edge_deeplab/runtime/model_input.py", "edge_deeplab/runtime/tensors.py", "converters/litert_quant.py",
             "tests/support/tiny.py", "tests/support/segmentation_models.py",
             "tests/support/export_models.py")


def tiny_config(**overrides):
    from edge_deeplab.model.config import ModelConfig

    return ModelConfig(**{**TINY, **overrides})


def seeded_model(config, seed: int = 0, **build_kw):
    """``build_model(config, **build_kw)`` after seeding every generator with ``seed``."""
    from edge_deeplab.core._tf import keras
    from edge_deeplab.model.deeplab import build_model

    keras.utils.set_random_seed(seed)
    return build_model(config, **build_kw)


def tiny_model(seed: int = 0, weights: str = "random", **overrides):
    """``(model, config)``: the tiny DeepLab (``overrides`` on :data:`TINY`) with ``weights``."""
    from tests.support import segmentation_models as recipes

    if weights == "colour":
        return recipes.colour_decided_deeplab(seed=seed, **overrides)
    cfg = tiny_config(**overrides)
    if weights == "calibrated":
        return recipes.calibrated_random_model(cfg, seed=seed), cfg
    if weights != "random":
        raise ValueError(f"unknown weights {weights!r}; expected one of {WEIGHTS}")
    return seeded_model(cfg, seed), cfg


def convert_naive(model) -> bytes:
    """A plain ``TFLiteConverter`` conversion (no edge-clean patch)."""
    from edge_deeplab.core._tf import tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def tiny_tflite(pytestconfig, variant: str = "float32", kind: str = "export", *, seed: int = 0,
                weights: str = "random", options: dict | None = None, **overrides) -> Path:
    """The tiny model converted, built once per code version.

    ``options`` are :func:`converters.export.export_tflite` keyword arguments (``io_type``,
    ``output``, ``normalize_in_graph``, ``calibration_steps`` (default 4), ``labels``, ...); they are
    part of the cache key, so they must be plain values (no paths to temporary data).
    """
    from tests.support.trained import cache_dir

    options = {"calibration_steps": 4, **(options or {})}
    key = json.dumps({"variant": variant, "kind": kind, "seed": seed, "weights": weights,
                      "options": options, **overrides}, sort_keys=True, default=str)
    d = cache_dir(pytestconfig, "edge_deeplab_tiny", TINY_CODE, extra=key)
    path = d / f"tiny_{kind}_{variant}.tflite"
    # the exporter writes the sidecar last: a run killed in between rebuilds
    if path.is_file() and path.stat().st_size > 0 and (
            kind == "naive" or path.with_suffix(".json").is_file()):
        return path
    from edge_deeplab.core.atomic_io import write_bytes_atomic

    model, cfg = tiny_model(seed, weights, **overrides)
    if kind == "naive":
        write_bytes_atomic(path, convert_naive(model))
        return path
    from converters.export import export_tflite

    if variant == "qat-int8":
        from edge_deeplab.training.qat import quantize_model

        model = quantize_model(model)
    export_tflite(model, path, variant, config=cfg, **options)
    return path
