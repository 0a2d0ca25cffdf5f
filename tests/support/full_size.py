"""The small trained model at the default 512x512 input size, and real-scale 512x512 inputs for it.

DeepLab is fully convolutional (global pooling included), so the trained 64x64 model's weights run
unchanged at 512x512: :func:`trained_at_size` rebuilds the float and the QAT model at that size and
copies the weights. Fed a 512x512 image of its own training scenes' scale, a mosaic of 8x8 of the
64x64 held-out scenes (:func:`mosaic`), it is as decisive as at 64x64 (measured on a Zen 4 EPYC:
pixel accuracy 0.805, median top-2 logit margin 2.7), so a GPU-vs-CPU bound checked on it means
what the README says, at the size phones run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

#: The export size the README's GPU claim is about (``ModelConfig``'s default input).
FULL_SIZE = (512, 512)


def mosaic(data_dir, split: str, seed: int, size=FULL_SIZE, tile: int = 64):
    """``(image uint8 (H, W, 3) RGB, mask uint8 (H, W))``: ``size`` tiled with ``tile``-pixel scenes
    of ``split`` of the synthetic dataset at ``data_dir``, picked with ``seed``."""
    from PIL import Image

    data_dir = Path(data_dir)
    stems = (data_dir / f"{split}.txt").read_text().split()
    rows, cols = size[0] // tile, size[1] // tile
    pick = np.random.default_rng(seed).choice(len(stems), rows * cols, replace=True)
    image = np.zeros((*size, 3), np.uint8)
    mask = np.zeros(size, np.uint8)
    for t, i in enumerate(pick):
        r, c = divmod(t, cols)
        cell = np.s_[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile]
        image[cell] = np.array(Image.open(data_dir / "images" / f"{stems[i]}.png").convert("RGB"))
        mask[cell] = np.array(Image.open(data_dir / "masks" / f"{stems[i]}.png"))
    return image, mask


def trained_at_size(manifest: dict, size=FULL_SIZE):
    """``(config, float model, QAT model)`` of the trained test model (``manifest`` from
    :func:`tests.support.trained.trained_artifacts`) rebuilt at ``size`` with its weights."""
    from edge_deeplab.model.deeplab import build_model
    from edge_deeplab.model.model_io import load_model
    from edge_deeplab.model.qat_io import load_qat_model
    from edge_deeplab.training.qat import quantize_model

    model, cfg, _ = load_model(manifest["keras"])
    cfg = dataclasses.replace(cfg, input_size=tuple(size))
    big = build_model(cfg)
    big.set_weights(model.get_weights())
    qat, _, _ = load_qat_model(manifest["run"])
    big_qat = quantize_model(build_model(cfg))
    big_qat.set_weights(qat.get_weights())
    return cfg, big, big_qat
