"""The weight recipes of the suite's untrained DeepLabs: argmaxes decided by the image, no training.

A random, untrained DeepLab has near-tied logits, so any rounding flips its argmax. Both recipes
build through the one builder (:func:`tests.support.tiny.seeded_model`; :func:`tests.support.tiny.tiny_model`
names them ``calibrated`` and ``colour``):

* :func:`calibrated_random_model`: random BatchNorm affine parameters with statistics measured on
  real-ish images (optionally a logits layer fitted to colour segments): a well-conditioned network
  whose argmax varies over the image, as a trained one's does.
* :func:`colour_decided_deeplab`: a colour rule with wide margins added to a (scaled-down) real
  DeepLab head, so the class of a pixel follows its colour and brightness decisively, while every
  DeepLab op still runs in the graph. The rule depends on the absolute input level (not only on
  colour ratios), so feeding the model wrongly normalized input (raw pixels instead of [-1, 1], or
  BGR instead of RGB) changes the classes.
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


#: The colour-decided model's config (on :data:`tests.support.tiny.TINY`): output stride 32, no dilation.
COLOUR_CONFIG = dict(output_stride=32, aspp_rates=(1, 1, 1), labels=LABELS)


def colour_decided_deeplab(seed: int = 0, deeplab_weight: float = 0.02, **overrides):
    """``(model, config)``: DeepLab (OS 32, no dilation) logits x ``deeplab_weight`` + a colour rule.

    ``overrides`` change the tiny config (e.g. ``input_size``). The result is a flat-enough
    functional ``tf_keras`` model taking normalized input (like the toolkit's models), exported by
    :func:`converters.export.export_tflite` like any other.
    """
    from edge_deeplab.core._tf import keras
    from tests.support.tiny import seeded_model, tiny_config

    cfg = tiny_config(**{**COLOUR_CONFIG, **overrides})
    deeplab = seeded_model(cfg, seed)
    size = tuple(cfg.input_size)
    inp = keras.Input((*size, 3), name="image")
    colour = keras.layers.Conv2D(len(LABELS), 1, name="colour_rule")
    c = colour(inp)
    colour.set_weights([_W.reshape(1, 1, 3, len(LABELS)), _B])
    d = keras.layers.Rescaling(deeplab_weight, name="deeplab_scale")(deeplab(inp))
    out = keras.layers.Add(name="logits_sum")([c, d])
    return keras.Model(inp, out, name="colour_deeplab"), cfg


def calibrated_random_model(config, seed: int = 0, n_images: int = 4, var_floor: float = 1.0,
                            fit_head: bool = False, ridge: float = 1.0):
    """Builds ``config`` with random BN affine params and BN statistics measured on real-ish images.

    Random gamma/beta make the logits depend on the image; setting every BatchNorm's moving
    statistics to the batch statistics of a few natural/generated images (one training-mode pass
    with momentum 0) keeps activations well scaled, as in a trained network. A random deep net is
    chaotic, though: near-constant channels normalized by a tiny variance amplify rounding noise
    (fp16 weights alone flip ~13% of argmax pixels of the full model). Adding ``var_floor`` x the
    layer's median variance to each moving variance bounds that gain, as training does, so the
    model is as well conditioned as a trained one (fp16 weights flip < 0.1%) while its argmax
    still varies over the image. ``fit_head`` then fits the logits layer (see
    :func:`_fit_logits_to_colour_segments`) so the argmax has trained-like margins.
    """
    from converters.calibration import structured_images
    from edge_deeplab.core._tf import keras
    from edge_deeplab.core.contract.semantics import NORM_MEAN, NORM_STD
    from edge_deeplab.core.pixels import normalize
    from tests.support.export_models import natural_image
    from tests.support.tiny import seeded_model

    model = seeded_model(config, seed)  # deterministic: an unseeded build made the checks flaky
    rng = np.random.default_rng(seed)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    for l in bns:
        g, b, m, v = l.get_weights()
        l.set_weights([rng.uniform(0.6, 1.6, g.shape).astype(np.float32),
                       rng.normal(0.0, 0.3, b.shape).astype(np.float32), m, v])
    logits = model.get_layer("logits")
    k, bias = logits.get_weights()
    logits.set_weights([k, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
    size = tuple(config.input_size)
    imgs = [natural_image(size)] + list(structured_images(n_images - 1, size, seed=seed + 1))
    x = np.stack([normalize(i, NORM_MEAN, NORM_STD) for i in imgs]).astype(np.float32)
    old = [l.momentum for l in bns]
    try:
        for l in bns:
            l.momentum = 0.0
        model(x, training=True)
    finally:
        for l, m in zip(bns, old):
            l.momentum = m
    if var_floor:
        for l in bns:
            g, b, m, v = l.get_weights()
            l.set_weights([g, b, m, (v + var_floor * np.median(v)).astype(np.float32)])
    if fit_head:
        _fit_logits_to_colour_segments(model, config, imgs, x, ridge=ridge)
    return model


def _fit_logits_to_colour_segments(model, config, imgs, x, margin: float = 4.0, ridge: float = 1e-2):
    """Closed-form (ridge) fit of the 1x1 ``logits`` conv so the model segments images by colour.

    A random network's logits are all close together (tiny top-2 margins), so any rounding flips
    its argmax, unlike a trained network's. Fitting only the last layer to a joint k-means colour
    segmentation of the calibration images gives trained-like margins and an argmax that follows
    the image's regions, while the rest of the network keeps its random, calibrated weights.
    """
    import cv2

    from edge_deeplab.core._tf import keras

    logits = model.get_layer("logits")
    feat_model = keras.Model(model.input, logits.input)
    feats = feat_model(x, training=False).numpy()
    n, fh, fw, c = feats.shape
    small = np.stack([cv2.resize(i, (fw, fh), interpolation=cv2.INTER_AREA) for i in imgs])
    k = max(2, min(config.num_classes, 5))
    cv2.setRNGSeed(0)
    pix = small.reshape(-1, 3).astype(np.float32)
    _, lab, _ = cv2.kmeans(pix, k, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5),
                           3, cv2.KMEANS_PP_CENTERS)
    lab = lab.reshape(n, fh, fw)
    lab = np.stack([cv2.medianBlur(l.astype(np.uint8), 3) for l in lab]).reshape(-1)
    classes = np.linspace(0, config.num_classes - 1, k).round().astype(int)
    y = np.full((lab.size, config.num_classes), -margin, np.float64)
    y[np.arange(lab.size), classes[lab]] = margin
    f = np.concatenate([feats.reshape(-1, c), np.ones((lab.size, 1), np.float32)], 1).astype(np.float64)
    gram = f.T @ f
    lam = ridge * np.trace(gram) / gram.shape[0]
    w = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), f.T @ y)
    logits.set_weights([w[:-1].reshape(1, 1, c, -1).astype(np.float32),
                        w[-1].astype(np.float32)])
