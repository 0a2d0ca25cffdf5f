"""Fixtures for the model/export/analyze tests: non-trivial weights, a natural image, GPU runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GRACE_HOPPER = "mpl-data/sample_data/grace_hopper.jpg"

SMALL = dict(input_size=(64, 64), num_classes=3, alpha=0.35)


def natural_image(size=(512, 512)) -> np.ndarray:
    """A real photo (matplotlib's Grace Hopper sample) resized to ``size``; generated if absent."""
    import cv2

    h, w = size
    try:
        import matplotlib

        p = Path(matplotlib.__file__).parent / GRACE_HOPPER
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is not None:
            return np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)[..., ::-1])
    except ImportError:
        pass
    from converters.export import structured_images

    return next(structured_images(1, (h, w), seed=123))


def calibrated_random_model(config, seed: int = 0, n_images: int = 4, var_floor: float = 1.0):
    """Builds ``config`` with random BN affine params and BN statistics measured on real-ish images.

    Random gamma/beta make the logits depend on the image; setting every BatchNorm's moving
    statistics to the batch statistics of a few natural/generated images (one training-mode pass
    with momentum 0) keeps activations well scaled, as in a trained network. A random deep net is
    chaotic, though: near-constant channels normalized by a tiny variance amplify rounding noise
    (fp16 weights alone flip ~13% of argmax pixels of the full model). Adding ``var_floor`` x the
    layer's median variance to each moving variance bounds that gain, as training does, so the
    model is as well conditioned as a trained one (fp16 weights flip < 0.1%) while its argmax
    still varies over the image.
    """
    from edge_deeplab._tf import keras
    from edge_deeplab.layers import native_dilated_depthwise
    from edge_deeplab.model import build_model
    from converters.export import structured_images, to_model_range

    model = build_model(config)
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
    x = np.stack([to_model_range(i) for i in imgs]).astype(np.float32)
    old = [l.momentum for l in bns]
    try:
        for l in bns:
            l.momentum = 0.0
        with native_dilated_depthwise():
            model(x, training=True)
    finally:
        for l, m in zip(bns, old):
            l.momentum = m
    if var_floor:
        for l in bns:
            g, b, m, v = l.get_weights()
            l.set_weights([g, b, m, (v + var_floor * np.median(v)).astype(np.float32)])
    return model


def op_counts(path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    counts = {}
    for d in Interpreter(model_path=str(path))._get_ops_details():
        counts[d["op_name"]] = counts.get(d["op_name"], 0) + 1
    return counts


def predict(path, image: np.ndarray, accelerator: str = "cpu") -> np.ndarray:
    """Float logits (h, w, C) or class map of one uint8 image through the shared runtime."""
    from edge_deeplab.runtime import open_runner

    r = open_runner(str(path), accelerator=accelerator)
    try:
        if accelerator == "gpu" and r.fully_accelerated is False:
            raise AssertionError(f"GPU did not take the whole graph: {r.unsupported_ops}")
        return r.predict(image)
    finally:
        r.close()


def keras_logits(model, image: np.ndarray) -> np.ndarray:
    from converters.export import to_model_range
    from edge_deeplab.layers import native_dilated_depthwise

    with native_dilated_depthwise():
        return model(to_model_range(image)[None], training=False).numpy()[0]
