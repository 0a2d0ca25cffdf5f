"""Fixtures for the model/export/analyze tests: a natural image, op counts, metadata entry names,
runs on CPU and GPU.

Models with non-trivial weights come from :mod:`tests.support.segmentation_models`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GRACE_HOPPER = "mpl-data/sample_data/grace_hopper.jpg"


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
    from converters.calibration import structured_images

    return next(structured_images(1, (h, w), seed=123))


def op_counts(tflite) -> dict:
    """``{op name: count}`` of a .tflite (path or bytes), before any delegation."""
    import os

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kw = {"model_path": str(tflite)} if isinstance(tflite, (str, os.PathLike)) else \
        {"model_content": bytes(tflite)}
    it = Interpreter(experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, **kw)
    counts = {}
    for d in it._get_ops_details():
        counts[d["op_name"]] = counts.get(d["op_name"], 0) + 1
    return counts


def metadata_names(path_or_bytes) -> list:
    """Names of all entries in a .tflite's metadata table (e.g. ``min_runtime_version``)."""
    from edge_deeplab.core.contract.metadata import load_tflite_bytes, parse_model

    return [md.name for md in parse_model(load_tflite_bytes(path_or_bytes)).metadata]


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
    """The Keras model's logits on a uint8 RGB image, normalized here with the literal MobileNet-v2
    rule ``pixel / 127.5 - 1`` (never the exporter's own helper: this is the exports' reference)."""
    return model((image.astype(np.float32) / 127.5 - 1.0)[None], training=False).numpy()[0]
