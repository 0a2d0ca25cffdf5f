"""Small segmentation models whose argmax is decided by the image, without any training.

A random, untrained DeepLab has near-tied logits, so any rounding flips its argmax. The model here
adds a colour rule with wide margins to a (scaled-down) real DeepLab head, so the class of a pixel
follows its colour and brightness decisively, while every DeepLab op still runs in the graph. The
rule depends on the absolute input level (not only on colour ratios), so feeding the model wrongly
normalized input (raw pixels instead of [-1, 1], or BGR instead of RGB) changes the classes.
"""

from __future__ import annotations

import numpy as np

LABELS = ("background", "person", "sky")
#: Colour rule on normalized RGB x in [-1, 1]: dark -> background, red-ish -> person, blue-ish -> sky.
#: Generic (non-symmetric) coefficients: with symmetric ones, every grey pixel (R == B) would be an
#: exact tie, decided only by the tiny DeepLab term, i.e. by kernel rounding.
_W = np.array([[-1.3, 3.7, -1.7],    # R  -> columns: background, person, sky
               [-0.9, -2.1, -1.3],   # G
               [-1.1, -1.9, 3.3]],   # B
              np.float32) * 2.0
_B = np.array([0.0, 0.45, 0.35], np.float32)


def colour_rule(image_uint8: np.ndarray) -> np.ndarray:
    """The rule's class map for a uint8 RGB image (what the model predicts up to its DeepLab term)."""
    x = image_uint8.astype(np.float32) / 127.5 - 1.0
    return (x @ _W + _B).argmax(-1)


def colour_decided_deeplab(size=(64, 64), deeplab_weight: float = 0.02, seed: int = 0):
    """``(model, config)``: DeepLab (OS 32, no dilation) logits x ``deeplab_weight`` + a colour rule.

    The result is a flat-enough functional ``tf_keras`` model taking normalized input (like the
    toolkit's models), exported by :func:`converters.export.export_tflite` like any other.
    """
    from edge_deeplab.core._tf import keras
    from edge_deeplab.model.config import ModelConfig
    from edge_deeplab.model.deeplab import build_model

    keras.utils.set_random_seed(seed)
    cfg = ModelConfig(input_size=size, num_classes=len(LABELS), alpha=0.35, output_stride=32,
                      aspp_rates=(1, 1, 1), labels=LABELS)
    deeplab = build_model(cfg)
    inp = keras.Input((*size, 3), name="image")
    colour = keras.layers.Conv2D(len(LABELS), 1, name="colour_rule")
    c = colour(inp)
    colour.set_weights([_W.reshape(1, 1, 3, len(LABELS)), _B])
    d = keras.layers.Rescaling(deeplab_weight, name="deeplab_scale")(deeplab(inp))
    out = keras.layers.Add(name="logits_sum")([c, d])
    return keras.Model(inp, out, name="colour_deeplab"), cfg
