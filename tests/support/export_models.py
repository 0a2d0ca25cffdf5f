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
    from converters.export import structured_images, to_model_range
    from edge_deeplab.core._tf import keras
    from edge_deeplab.model.deeplab import build_model

    keras.utils.set_random_seed(seed)  # deterministic: an unseeded build made the checks flaky
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


def op_counts(path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    counts = {}
    for d in Interpreter(model_path=str(path))._get_ops_details():
        counts[d["op_name"]] = counts.get(d["op_name"], 0) + 1
    return counts


def predict(path, image: np.ndarray, accelerator: str = "cpu") -> np.ndarray:
    """Float logits (h, w, C) or class map of one uint8 image through the shared runtime.

    No retry: a failed GPU invocation fails the test.
    """
    from edge_deeplab.runtime import open_runner

    with open_runner(str(path), accelerator=accelerator) as r:
        if accelerator == "gpu" and r.fully_accelerated is False:
            raise AssertionError(f"GPU did not take the whole graph: {r.unsupported_ops}")
        return r.predict(image)


def keras_logits(model, image: np.ndarray) -> np.ndarray:
    from converters.export import to_model_range

    return model(to_model_range(image)[None], training=False).numpy()[0]
