"""The distillation loss and the copy-paste augmentation against formulas written out here."""

from __future__ import annotations

import numpy as np

from edge_deeplab.core._tf import tf
from edge_deeplab.training.distill import augment_example, copy_paste, soft_target_loss


def _logits(seed, shape):
    return np.random.default_rng(seed).normal(0, 2, shape).astype(np.float32)


def test_two_class_soft_loss_is_the_binary_cross_entropy_of_the_person_logit():
    z = _logits(0, (2, 4, 4, 2))
    p = np.random.default_rng(1).uniform(0, 1, (2, 4, 4)).astype(np.float32)  # teacher's person prob
    q = np.stack([1 - p, p], -1)
    w = np.ones((2, 4, 4, 1), np.float32)
    d = z[..., 1] - z[..., 0]
    sig = 1 / (1 + np.exp(-d))
    bce = -(p * np.log(sig) + (1 - p) * np.log(1 - sig)).mean()
    assert abs(float(soft_target_loss(z, q, w)) - bce) < 1e-5


def test_temperature_gives_t_squared_kl_plus_the_teachers_entropy():
    z = _logits(2, (1, 3, 3, 4))
    t_logits = _logits(3, (1, 3, 3, 4))
    T = 2.0
    q = np.exp(t_logits) / np.exp(t_logits).sum(-1, keepdims=True)
    qt = np.exp(t_logits / T) / np.exp(t_logits / T).sum(-1, keepdims=True)  # tempered teacher
    ps = np.exp(z / T) / np.exp(z / T).sum(-1, keepdims=True)
    kl = (qt * (np.log(qt) - np.log(ps))).sum(-1)
    entropy = -(qt * np.log(qt)).sum(-1)
    want = (T * T * (kl + entropy)).mean()
    got = float(soft_target_loss(z, q, np.ones((1, 3, 3, 1), np.float32), temperature=T))
    assert abs(got - want) < 1e-4


def test_weights_ignore_padding_and_hard_mix():
    z = _logits(4, (1, 2, 2, 2))
    q = np.array([[[[0.9, 0.1], [0.2, 0.8]], [[0.5, 0.5], [0.3, 0.7]]]], np.float32)
    w = np.array([[[[1.0], [0.0]], [[1.0], [0.0]]]], np.float32)  # right column is padding
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    soft = -(q * logp).sum(-1)
    hard = -np.take_along_axis(logp, q.argmax(-1)[..., None], -1)[..., 0]
    per = 0.7 * soft + 0.3 * hard
    want = per[0, :, 0].mean()
    assert abs(float(soft_target_loss(z, q, w, hard_weight=0.3)) - want) < 1e-5


def test_copy_paste_composites_image_and_target_with_the_teachers_person():
    img = np.zeros((2, 4, 4, 3), np.float32)
    img[1] = 1.0  # item 1 is white, item 0 black
    tgt = np.zeros((2, 4, 4, 2), np.float32)
    tgt[..., 0] = 1.0  # no person anywhere ...
    tgt[1, :2, :, :] = [0.2, 0.8]  # ... except the top half of item 1 (person prob 0.8)
    wgt = np.ones((2, 4, 4, 1), np.float32)
    seed = tf.constant([1, 2], tf.int64)
    i2, t2, w2 = (x.numpy() for x in copy_paste(tf.constant(img), tf.constant(tgt),
                                                tf.constant(wgt), seed, person=1, rate=1.0))
    # item 0 gets item 1's person: alpha 0.8 in the top half
    assert np.allclose(i2[0, :2], 0.8) and np.allclose(i2[0, 2:], 0.0)
    assert np.allclose(t2[0, :2, :, 1], 0.8) and np.allclose(t2[0, 2:, :, 1], 0.0)
    assert np.allclose(t2.sum(-1), 1.0) and np.allclose(w2, 1.0)
    # item 1 gets item 0's (absent) person: unchanged
    assert np.allclose(i2[1], img[1]) and np.allclose(t2[1], tgt[1])
    same = copy_paste(tf.constant(img), tf.constant(tgt), tf.constant(wgt), seed, person=1, rate=0.0)
    assert np.array_equal(same[0].numpy(), img)


def test_augmented_example_keeps_targets_aligned_and_padding_weightless():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :16] = 255  # left half white
    soft = np.zeros((32, 32, 2), np.uint8)
    soft[:, :16, 1] = 255  # the left half is the person
    soft[:, 16:, 0] = 255
    for k in range(6):
        img, tgt, w = (x.numpy() for x in augment_example(
            image, soft, tf.constant([7, k], tf.int64), size=(32, 32), min_scale=0.6,
            max_scale=1.4, flip=True, jitter=0.0))
        valid = w[..., 0] > 0.99
        assert valid.mean() > 0.3
        # where the pixel is (nearly) white, the target is (nearly) person, and vice versa
        white = img[..., 0] > 0.9
        black = img[..., 0] < 0.1
        assert (tgt[white & valid, 1] > 0.9).all() and (tgt[black & valid, 1] < 0.1).all()
        assert np.allclose(tgt.sum(-1)[valid], 1.0, atol=1e-4)
