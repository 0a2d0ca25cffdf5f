"""tf.data input pipelines for training and evaluation.

Both pipelines read items through a :class:`~edge_deeplab.data.SegmentationDataset` (``len``,
``read(i) -> (uint8 RGB, uint8 mask)``, ``num_classes``) and yield
``(float32 images (N, H, W, 3) normalized as (x - NORM_MEAN) / NORM_STD == x / 127.5 - 1,
int32 masks (N, H, W) with 255 = ignore)``: the same normalization the exported models declare.

Training: read -> random scale (``min_scale``..``max_scale``, image bilinear, mask nearest) ->
normalize -> pad to the crop size (image with the mean, i.e. 0 after normalization; mask with 255) ->
random crop -> random left/right flip -> batch -> prefetch. Every random draw is a *stateless*
function of ``(seed, sample counter)``, so a pipeline is reproducible whatever the parallelism.

Evaluation: read -> the runtime's letterbox (:func:`edge_deeplab.core.pixels.place_pair`: the same
geometry and normalization every model input gets; image padded 0, mask 255) -> batch.
Deterministic, no shuffling.

Example:
    >>> from edge_deeplab.data import load_dataset                          # doctest: +SKIP
    >>> ds = make_train_dataset(load_dataset("synthetic"), crop_size=(128, 128),
    ...                         batch_size=8, seed=0)                      # doctest: +SKIP
    >>> images, masks = next(iter(ds))                                      # doctest: +SKIP
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from edge_deeplab.core._tf import tf
from edge_deeplab.core.contract.semantics import NORM_MEAN, NORM_STD
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import parse_size
from edge_deeplab.core.pixels import IGNORE_LABEL, place_pair

AUTOTUNE = tf.data.AUTOTUNE


def _reader(dataset):
    """A tf function reading item ``i`` of ``dataset`` as ``(uint8 (H,W,3), uint8 (H,W))``."""

    def _read(i):
        image, mask = dataset.read(int(i))
        image = np.ascontiguousarray(image, dtype=np.uint8)
        mask = np.ascontiguousarray(mask, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3 or mask.shape != image.shape[:2]:
            raise EdgeDeeplabError(f"item {int(i)}: bad image/mask shapes {image.shape} {mask.shape}")
        return image, mask

    def read(i):
        image, mask = tf.numpy_function(_read, [i], (tf.uint8, tf.uint8), stateful=False)
        image.set_shape((None, None, 3))
        mask.set_shape((None, None))
        return image, mask

    return read


def normalize(image):
    """uint8/float RGB -> float32 ``(x - NORM_MEAN) / NORM_STD`` (= ``x / 127.5 - 1``)."""
    image = tf.cast(image, tf.float32)
    return (image - tf.constant(NORM_MEAN, tf.float32)) / tf.constant(NORM_STD, tf.float32)


def _check_len(dataset):
    n = len(dataset)
    if n == 0:
        raise EdgeDeeplabError("dataset has no images")
    return n


def augment(image, mask, seed, *, crop_size, min_scale=0.5, max_scale=2.0, flip=True):
    """Random scale, pad, crop and flip of one example (stateless, driven by ``seed``).

    Args:
        image: uint8 ``(H, W, 3)``.
        mask: uint8 ``(H, W)``.
        seed: int32/int64 tensor of shape ``(2,)`` for the stateless random ops.
        crop_size: ``(h, w)`` of the output.
        min_scale, max_scale: range of the uniform random scale factor.
        flip: random left/right flip.

    Returns:
        ``(float32 (h, w, 3) normalized, int32 (h, w) with 255 ignore)``.
    """
    ch, cw = parse_size(crop_size)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
    shape = tf.shape(mask)
    h, w = shape[0], shape[1]
    if max_scale != 1.0 or min_scale != 1.0:
        s = tf.random.stateless_uniform((), seeds[0], minval=min_scale, maxval=max_scale)
        nh = tf.maximum(1, tf.cast(tf.round(tf.cast(h, tf.float32) * s), tf.int32))
        nw = tf.maximum(1, tf.cast(tf.round(tf.cast(w, tf.float32) * s), tf.int32))
        image = tf.image.resize(image, (nh, nw), method="bilinear")
        mask = tf.image.resize(mask[..., None], (nh, nw), method="nearest")[..., 0]
        h, w = nh, nw
    image = normalize(image)
    mask = tf.cast(mask, tf.int32)
    ph, pw = tf.maximum(ch - h, 0), tf.maximum(cw - w, 0)
    image = tf.pad(image, [[0, ph], [0, pw], [0, 0]], constant_values=0.0)
    mask = tf.pad(mask, [[0, ph], [0, pw]], constant_values=IGNORE_LABEL)
    h, w = h + ph, w + pw
    oy = tf.random.stateless_uniform((), seeds[1], minval=0, maxval=h - ch + 1, dtype=tf.int32)
    ox = tf.random.stateless_uniform((), seeds[2], minval=0, maxval=w - cw + 1, dtype=tf.int32)
    image = image[oy:oy + ch, ox:ox + cw]
    mask = mask[oy:oy + ch, ox:ox + cw]
    if flip:
        do_flip = tf.random.stateless_uniform((), seeds[3]) < 0.5
        image = tf.cond(do_flip, lambda: tf.reverse(image, [1]), lambda: image)
        mask = tf.cond(do_flip, lambda: tf.reverse(mask, [1]), lambda: mask)
    image.set_shape((ch, cw, 3))
    mask.set_shape((ch, cw))
    return image, mask


def make_train_dataset(dataset, *, crop_size, batch_size: int, seed: int = 0,
                       min_scale: float = 0.5, max_scale: float = 2.0, flip: bool = True,
                       cache: bool = False, repeat: bool = True, drop_remainder: bool = True,
                       shuffle_buffer: Optional[int] = None):
    """The training pipeline (infinite unless ``repeat=False``).

    Args:
        dataset: a ``SegmentationDataset`` (or anything with ``len`` and ``read(i)``).
        crop_size: ``(h, w)`` (or one int) of the training crops: the model's input size.
        batch_size: examples per batch (the *global* batch under a tf.distribute strategy).
        seed: makes shuffling and augmentation reproducible.
        min_scale, max_scale: random scale range (DeepLab: 0.5 to 2.0).
        flip: random horizontal flips.
        cache: keep decoded images in memory after the first epoch (small datasets only).
        repeat: loop forever (training by steps); ``False`` gives one epoch.
        drop_remainder: drop the last partial batch (static batch shape).
        shuffle_buffer: shuffle buffer in items (default: the whole dataset, capped at 4096).

    Returns:
        ``tf.data.Dataset`` of ``(float32 (B, h, w, 3), int32 (B, h, w))``.

    Example:
        >>> class Toy:
        ...     num_classes = 2
        ...     def __len__(self): return 3
        ...     def read(self, i):
        ...         return np.full((20, 30, 3), 255, np.uint8), np.ones((20, 30), np.uint8)
        >>> x, y = next(iter(make_train_dataset(Toy(), crop_size=16, batch_size=2, seed=1)))
        >>> tuple(x.shape), tuple(y.shape), str(y.dtype)
        ((2, 16, 16, 3), (2, 16, 16), "<dtype: 'int32'>")
    """
    n = _check_len(dataset)
    if batch_size < 1:
        raise EdgeDeeplabError(f"batch size must be >= 1, got {batch_size}")
    if not (0 < min_scale <= max_scale):
        raise EdgeDeeplabError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
    crop = parse_size(crop_size)
    read = _reader(dataset)
    buf = shuffle_buffer or min(n, 4096)
    if cache:
        ds = tf.data.Dataset.range(n).map(read, num_parallel_calls=AUTOTUNE).cache()
        ds = ds.shuffle(buf, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
    else:
        ds = tf.data.Dataset.range(n).shuffle(buf, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.map(read, num_parallel_calls=AUTOTUNE)
    base = tf.constant([int(seed), 0x5EED], tf.int64)

    def aug(k, item):
        image, mask = item
        s = base + tf.stack([tf.constant(0, tf.int64), k])
        return augment(image, mask, s, crop_size=crop, min_scale=min_scale, max_scale=max_scale,
                       flip=flip)

    ds = ds.enumerate().map(aug, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(AUTOTUNE)


def resize_with_pad(image, mask, size):
    """Places ``image``/``mask`` in ``size`` with the runtime's geometry (:func:`edge_deeplab.core.pixels.place_pair`).

    The letterbox every model input gets (evaluation, bench, calibration, the demo): aspect ratio
    kept, centred, area-resized when shrinking (bilinear when enlarging), normalized and padded with
    0 (the mean); the mask is resized nearest-neighbour and padded with 255. An item already of
    ``size`` passes through unchanged.

    Returns:
        ``(float32 (h, w, 3), int32 (h, w))``.
    """
    th, tw = parse_size(size)

    def _place(im, m):
        return place_pair(np.asarray(im, np.uint8), np.asarray(m, np.uint8), (th, tw), NORM_MEAN, NORM_STD)

    image_f, mask_i = tf.numpy_function(_place, [image, mask], (tf.float32, tf.int32), stateful=False)
    image_f.set_shape((th, tw, 3))
    mask_i.set_shape((th, tw))
    return image_f, mask_i


def make_eval_dataset(dataset, *, size, batch_size: int = 8, cache: bool = False):
    """The deterministic evaluation pipeline: every item once, in order.

    Args:
        dataset: a ``SegmentationDataset``.
        size: model input ``(h, w)`` (or one int); items are resized with padding to it.
        batch_size: examples per batch (the last batch may be smaller).
        cache: keep the prepared batches in memory (repeated validation of a small split).

    Returns:
        ``tf.data.Dataset`` of ``(float32 (B, h, w, 3), int32 (B, h, w))``.
    """
    _check_len(dataset)
    size = parse_size(size)
    ds = tf.data.Dataset.range(len(dataset)).map(_reader(dataset), num_parallel_calls=AUTOTUNE)
    ds = ds.map(lambda i, m: resize_with_pad(i, m, size), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size)
    if cache:
        ds = ds.cache()
    return ds.prefetch(AUTOTUNE)
