"""tf.data pipelines: augmentation keeps image and mask aligned, padding is ignored, determinism."""

import numpy as np
import pytest

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.data.pipeline import make_eval_dataset, make_train_dataset, resize_with_pad

# Region label k is painted with grey level LEVELS[k], so any pixel's label can be read back from
# its (normalized) colour: a misaligned crop/flip/scale between image and mask would show.
LEVELS = np.array([20, 90, 160, 230], np.float32)


class BlockDataset:
    """Stand-in for SegmentationDataset: quadrant scenes of varied sizes."""

    num_classes = 4
    labels = ("a", "b", "c", "d")

    def __init__(self, n=6, sizes=((48, 64), (40, 40), (70, 50))):
        self.n, self.sizes = n, sizes

    def __len__(self):
        return self.n

    def read(self, i):
        h, w = self.sizes[i % len(self.sizes)]
        mask = np.zeros((h, w), np.uint8)
        cy, cx = h // 2 + i % 5 - 2, w // 3 + i % 7
        mask[:cy, cx:] = 1
        mask[cy:, :cx] = 2
        mask[cy:, cx:] = 3
        mask[0, 0] = 255  # an ignore pixel
        image = np.repeat(LEVELS[np.minimum(mask, 3)][..., None], 3, axis=2).astype(np.uint8)
        return image, mask


def _labels_from_image(x):
    """Nearest grey level -> label, for normalized images."""
    grey = (x[..., 0] + 1.0) * 127.5
    return np.abs(grey[..., None] - LEVELS).argmin(-1)


def test_train_batches_shapes_types_range():
    ds = make_train_dataset(BlockDataset(), crop_size=(32, 48), batch_size=4, seed=0)
    x, y = next(iter(ds))
    assert x.shape == (4, 32, 48, 3) and x.dtype.name == "float32"
    assert y.shape == (4, 32, 48) and y.dtype.name == "int32"
    x, y = x.numpy(), y.numpy()
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(y)) <= {0, 1, 2, 3, 255}


def test_augmentation_keeps_image_and_mask_aligned():
    ds = make_train_dataset(BlockDataset(), crop_size=(48, 48), batch_size=6, seed=3,
                            min_scale=0.5, max_scale=2.0)
    it = iter(ds)
    padded_seen = flipped_like = 0
    for _ in range(4):
        x, y = (a.numpy() for a in next(it))
        pad = y == 255
        # Padding: image is the mean (0 after normalization) wherever the mask is padded/ignored
        # because of padding (the original ignore pixel has a real colour; allow it).
        if pad.sum() > 10:
            padded_seen += 1
            assert np.mean(np.abs(x[pad]) < 1e-6) > 0.9
        valid = ~pad
        agree = (_labels_from_image(x) == y)[valid].mean()
        # Bilinear image vs nearest mask differ only on region borders.
        assert agree > 0.9, agree
        flipped_like += int((y[:, :, :24] == 1).sum() > (y[:, :, 24:] == 1).sum())
    assert padded_seen > 0, "scale 0.5 on small images must pad"
    assert flipped_like > 0, "flips move the top-right region to the left sometimes"


def test_train_pipeline_is_deterministic_by_seed():
    def first(seed):
        x, y = next(iter(make_train_dataset(BlockDataset(), crop_size=32, batch_size=3, seed=seed)))
        return x.numpy(), y.numpy()

    a, b, c = first(5), first(5), first(6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not (np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1]))


def test_one_epoch_without_repeat_sees_every_item():
    ds = make_train_dataset(BlockDataset(n=5), crop_size=16, batch_size=2, seed=0, repeat=False,
                            drop_remainder=False, min_scale=1.0, max_scale=1.0)
    assert sum(int(x.shape[0]) for x, _ in ds) == 5


def test_resize_with_pad_centers_and_ignores_padding():
    image = np.full((40, 80, 3), 255, np.uint8)
    mask = np.ones((40, 80), np.uint8)
    x, y = (a.numpy() for a in resize_with_pad(image, mask, (64, 64)))
    assert x.shape == (64, 64, 3) and y.shape == (64, 64)
    # 40x80 -> 32x64, centered: 16 rows of padding above and below.
    assert (y[:16] == 255).all() and (y[48:] == 255).all() and (y[16:48] == 1).all()
    assert np.allclose(x[:16], 0.0) and np.allclose(x[16:48], 1.0)


def test_resize_with_pad_is_identity_at_model_size():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, (32, 48), dtype=np.uint8)
    x, y = (a.numpy() for a in resize_with_pad(image, mask, (32, 48)))
    assert np.allclose(x, image / 127.5 - 1.0, atol=1e-6)
    assert np.array_equal(y, mask)


def test_eval_pipeline_places_pixels_exactly_like_the_runtime_model_input():
    """Training-time evaluation and every model input (eval, bench, calibration, demo) share one
    geometry and normalization: a non-square image comes out identical to the bit."""
    import cv2

    from edge_deeplab.runtime.model_input import ModelInput

    rng = np.random.default_rng(3)
    for hw in ((45, 100), (120, 50), (20, 30)):  # shrink wide, shrink tall, enlarge
        image = rng.integers(0, 256, hw + (3,), dtype=np.uint8)
        mask = rng.integers(0, 4, hw, dtype=np.uint8)
        x, y = (a.numpy() for a in resize_with_pad(image, mask, (64, 48)))
        mi = ModelInput.float_input((64, 48))
        tensor, (top, left, nh, nw) = mi(image)
        assert np.array_equal(x, tensor[0])  # to the bit, padding included
        # The mask lies in the same box (the rest is ignore), resized nearest-neighbour.
        inside = np.zeros(y.shape, bool)
        inside[top:top + nh, left:left + nw] = True
        assert (y[~inside] == 255).all()
        ref = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(y[inside].reshape(nh, nw), ref)
        # The box is the centred aspect-preserving fit, written out by hand.
        f = min(64 / hw[0], 48 / hw[1])
        assert (nh, nw) == (round(hw[0] * f), round(hw[1] * f))
        assert (top, left) == ((64 - nh) // 2, (48 - nw) // 2)
        assert np.allclose(x[~inside], 0.0)


def test_eval_dataset_in_order_and_complete():
    src = BlockDataset(n=7)
    batches = list(make_eval_dataset(src, size=(48, 48), batch_size=3))
    assert [int(x.shape[0]) for x, _ in batches] == [3, 3, 1]
    ys = np.concatenate([y.numpy() for _, y in batches])
    for i in range(7):
        _, m = src.read(i)
        # Each item's classes survive (in order) the resize.
        assert set(np.unique(ys[i])) - {255} == set(np.unique(m)) - {255}
    again = np.concatenate([y.numpy() for _, y in make_eval_dataset(src, size=48, batch_size=3)])
    assert np.array_equal(ys, again)


def test_real_synthetic_dataset_through_the_pipeline(tmp_path):
    from edge_deeplab.data import load_dataset
    from edge_deeplab.data.synthetic import generate_synthetic

    generate_synthetic(tmp_path, num_train=8, num_val=2, size=64)
    ds = load_dataset("folder", tmp_path, "train")
    x, y = next(iter(make_train_dataset(ds, crop_size=(64, 64), batch_size=4, seed=0, cache=True)))
    assert x.shape == (4, 64, 64, 3) and set(np.unique(y.numpy())) <= {0, 1, 2, 3, 4, 255}


def test_bad_arguments_raise():
    with pytest.raises(EdgeDeeplabError):
        make_train_dataset(BlockDataset(), crop_size=16, batch_size=0, seed=0)
    with pytest.raises(EdgeDeeplabError):
        make_train_dataset(BlockDataset(), crop_size=16, batch_size=2, seed=0, min_scale=2.0,
                           max_scale=1.0)
    with pytest.raises(EdgeDeeplabError):
        make_eval_dataset(BlockDataset(n=0), size=16)
