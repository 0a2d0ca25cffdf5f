"""Named presets, as data: one dict of model/train config fields (and quickstart knobs) per name.

* ``quickstart``: the quickstart model: 128x128, alpha 0.35, OS 16, decoder on, slim 64-channel
  ASPP/decoder, trained from scratch on the synthetic dataset (synthetic-v3: 1200 train / 200 val
  scenes). Measured, seed 0: val mIoU 0.850 after 1200 steps (batch 16, Adam 5e-3 poly 0.9; 0.825
  with 3e-3), 519 s of training on this 2-core machine while it also ran a test suite (373 s for
  the same run at load ~5); ~0.28 s/step on 2 idle cores (~6 min).
* ``fast``: ``--fast``: a ~3-minute CI smoke pair (same code path, no accuracy target). The
  128x128 scenes are scaled by ~0.5 in training, as evaluation fits them to 64x64.
* ``paper``: the quickstart model with the paper's head widths and SGD recipe (``train --preset
  paper``).

Example:
    >>> model_cfg, train_cfg = preset("fast")
    >>> model_cfg.input_size, train_cfg.steps
    ((64, 64), 120)
"""

from __future__ import annotations

import copy
from typing import Tuple

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.model.config import ModelConfig, TrainConfig

_QUICKSTART_MODEL = dict(input_size=(128, 128), num_classes=5, output_stride=16, alpha=0.35,
                         decoder=True, aspp_filters=64, low_level_filters=32, decoder_filters=64,
                         labels=("background", "person", "ball", "box", "cone"))
_QUICKSTART_TRAIN = dict(dataset="synthetic", steps=1200, batch_size=16, lr=5e-3, optimizer="adam",
                         weight_decay=1e-5, min_scale=0.75, max_scale=1.5, checkpoint_every=300,
                         warmup_steps=50, bn_momentum=0.99, recalibrate_batches=10)

#: ``{name: {"model": ModelConfig fields, "train": TrainConfig fields, "quickstart": knobs}}``.
PRESETS = {
    "quickstart": {
        "model": _QUICKSTART_MODEL,
        "train": _QUICKSTART_TRAIN,
        "quickstart": dict(qat_steps=None, eval_images=None, bench_runs=30, bench_warmup=5,
                           demo_frames=48, calib_steps=100, num_train=None, num_val=None,
                           quant_report_images=8),
    },
    "fast": {
        "model": {**_QUICKSTART_MODEL, "input_size": (64, 64), "aspp_filters": 32,
                  "low_level_filters": 16, "decoder_filters": 32},
        "train": {**_QUICKSTART_TRAIN, "steps": 120, "batch_size": 8, "checkpoint_every": 60,
                  "min_scale": 0.4, "max_scale": 0.6, "warmup_steps": 10, "val_max_images": 64,
                  "bn_momentum": 0.9, "recalibrate_batches": 4},
        "quickstart": dict(qat_steps=40, eval_images=48, bench_runs=10, bench_warmup=2,
                           demo_frames=16, calib_steps=16, num_train=160, num_val=48,
                           quant_report_images=2),
    },
    "paper": {
        "model": {**_QUICKSTART_MODEL, "aspp_filters": 256, "low_level_filters": 48,
                  "decoder_filters": 256},
        "train": {**_QUICKSTART_TRAIN, "optimizer": "sgd", "lr": 0.007, "weight_decay": 4e-5,
                  "min_scale": 0.5, "max_scale": 2.0, "warmup_steps": 0, "bn_momentum": None,
                  "steps": 30000, "checkpoint_every": 1000},
    },
}
PRESET_NAMES = tuple(PRESETS)


def preset(name: str) -> Tuple[ModelConfig, TrainConfig]:
    """``(ModelConfig, TrainConfig)`` of a preset name."""
    if name not in PRESETS:
        raise EdgeDeeplabError(f"unknown preset {name!r}; choose from {', '.join(PRESET_NAMES)}")
    p = PRESETS[name]
    return ModelConfig(**copy.deepcopy(p["model"])), TrainConfig(**copy.deepcopy(p["train"]))


def quickstart_knobs(name: str) -> dict:
    """The quickstart's step sizes (QAT steps, eval images, bench runs, ...) of a preset."""
    return dict(PRESETS[name]["quickstart"])


QUICKSTART_MODEL, QUICKSTART_TRAIN = preset("quickstart")
FAST_MODEL, FAST_TRAIN = preset("fast")
