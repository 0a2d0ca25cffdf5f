"""Calibration images for the exporter's post-training quantization (and quant-report's inputs).

* :func:`structured_images`: generated scenes when no dataset is given;
* :func:`dataset_images`: evenly spaced images of a dataset split;
* :func:`representative_dataset`: the converter's representative dataset, every image through the runtime's
  one image-to-input path (:class:`~edge_deeplab.runtime.model_input.ModelInput`), so calibration
  sees the pixels evaluation, bench and phones feed.

Example:
    >>> imgs = list(structured_images(1, (16, 24)))
    >>> imgs[0].shape
    (16, 24, 3)
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from edge_deeplab.core.contract.semantics import normalization_dict
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.runtime.model_input import ModelInput


def structured_images(n: int, size, seed: int = 0) -> Iterator[np.ndarray]:
    """Generated uint8 RGB scenes (not white noise) for calibration when no dataset is given.

    Uses the bundled procedural scene renderer (:func:`edge_deeplab.data.synthetic.render_scene`:
    textured backgrounds, people, balls, boxes, cones). Each image has at least one pure-black and
    one pure-white pixel, so the input quantization covers the full 0..255 range (see the module
    docstring).

    Args:
        n: number of images.
        size: ``(height, width)``.
        seed: RNG seed (deterministic output).

    Example:
        >>> imgs = list(structured_images(2, (32, 48)))
        >>> imgs[0].shape, imgs[0].dtype, int(imgs[0].min()), int(imgs[0].max())
        ((32, 48, 3), dtype('uint8'), 0, 255)
    """
    from edge_deeplab.data.synthetic import render_scene

    h, w = (size, size) if isinstance(size, int) else tuple(size)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        img = np.array(render_scene(rng, (h, w))[0], dtype=np.uint8)  # a copy: the corners change
        img[0, 0] = 0
        img[-1, -1] = 255
        yield img


def dataset_images(name: str, data_dir=None, split: str = "train", steps: int = 100,
                   ) -> Iterator[np.ndarray]:
    """Up to ``steps`` uint8 RGB images from a dataset split, evenly spaced, at their own size
    (:func:`representative_dataset` places them in the model input with the runtime's geometry).

    Args:
        name: dataset name for :func:`edge_deeplab.data.load_dataset` (``voc``, ``synthetic`` ...).
        data_dir: dataset root.
        split: split to draw from.
        steps: number of images.

    Example:
        >>> next(dataset_images("synthetic", steps=1)).dtype                # doctest: +SKIP
        dtype('uint8')
    """
    from edge_deeplab.data import load_dataset

    ds = load_dataset(name, data_dir=data_dir, split=split)
    n = len(ds)
    if n == 0:
        raise EdgeDeeplabError(f"calibration dataset {name} ({split}) has no images")
    idx = np.unique(np.linspace(0, n - 1, num=min(steps, n)).round().astype(int))
    for i in idx:
        img, _ = ds.read(int(i))
        yield np.ascontiguousarray(img, dtype=np.uint8)


def representative_dataset(images: Iterable[np.ndarray], shape, metadata: dict, limit: int):
    """Generator factory for the converter: float32 batches of 1 in the model input's range.

    uint8 RGB images (any size) go through the runtime's one image-to-input path for a float model
    with ``metadata``'s normalization (:class:`~edge_deeplab.runtime.model_input.ModelInput`: the
    geometry, normalization and padding that evaluation, bench and phones use); float arrays are
    taken as already normalized and must have the input's shape.

    Args:
        images: uint8 RGB images, or float arrays of ``shape`` (normalized; for a model that
            normalizes in its graph, normalized values in [-1, 1] are mapped back to pixels).
        shape: the model input ``(h, w, c)``.
        metadata: the model's metadata: ``normalization`` (``{"mean", "std"}``),
            ``normalize_in_graph`` and ``input_geometry`` (``letterbox`` or ``stretch``), so the
            images are placed exactly as the runtime places them.
        limit: at most this many images.

    Example:
        >>> gen = representative_dataset(structured_images(2, (8, 8)), (8, 8, 3), {}, limit=1)
        >>> [x.shape for [x] in gen()]
        [(1, 8, 8, 3)]
    """
    raw_pixels = bool(metadata.get("normalize_in_graph"))
    norm = normalization_dict(metadata)
    mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
    mi = ModelInput.float_input(shape[:2], metadata, channels=int(shape[2]))

    def gen():
        for i, img in enumerate(images):
            if i >= limit:
                break
            if np.asarray(img).dtype == np.uint8 and np.ndim(img) == 3 and np.shape(img)[2] == 3:
                yield [mi(np.asarray(img))[0]]  # a fresh float32 tensor
                continue
            x = np.asarray(img, np.float32)
            if x.shape != tuple(shape):
                raise EdgeDeeplabError(f"calibration image {i} has shape {x.shape}, the model "
                                       f"expects {tuple(shape)}")
            if raw_pixels and x.min() >= -1.0001 and x.max() <= 1.0001:
                x = x * std + mean
            yield [x[None].astype(np.float32)]
    return gen
