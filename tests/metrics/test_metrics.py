"""ConfusionMatrix: whole-split mIoU against a naive per-pixel reference."""

import json

import numpy as np
import pytest

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.metrics import ConfusionMatrix, format_table
from tests.support.cli import assert_one_line_error
from tests.support.data_trees import naive_miou, noisy_prediction, per_image_mean_miou, random_scene


def _random_pairs(seed, n=6, k=5):
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        h, w = [(20, 30), (12, 50), (33, 17)][i % 3]
        gt = random_scene(rng, h, w, k, border=True, ignore_frac=0.05)
        pairs.append((noisy_prediction(rng, gt, k, flip_frac=0.1 + 0.2 * (i % 2)), gt))
    return pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference_and_not_per_image_mean(seed):
    k = 5
    pairs = _random_pairs(seed, k=k)
    cm = ConfusionMatrix(k)
    for p, g in pairs:
        cm.update(p, g)
    r = cm.result()
    ref_miou, ref_per_class, ref_acc = naive_miou(pairs, k)
    assert r["miou"] == pytest.approx(ref_miou, abs=1e-12)
    assert r["pixel_accuracy"] == pytest.approx(ref_acc, abs=1e-12)
    for a, b in zip(r["per_class_iou"], ref_per_class):
        assert (a is None and b is None) or a == pytest.approx(b, abs=1e-12)
    assert r["num_images"] == len(pairs)
    assert r["num_pixels"] == sum(int((g != 255).sum()) for _, g in pairs)
    # Averaging per-image mIoUs gives a measurably different (wrong) number.
    assert abs(per_image_mean_miou(pairs, k) - r["miou"]) > 1e-3


def test_absent_class_is_none_and_excluded_from_mean():
    cm = ConfusionMatrix(4)
    cm.update(np.array([[0, 0, 1, 1]]), np.array([[0, 0, 1, 255]]))
    r = cm.result()
    assert r["per_class_iou"][2] is None and r["per_class_iou"][3] is None
    # class 0: 2/2; class 1: TP 1, FP 0 (the 255 pixel is ignored) -> 1.0
    assert r["miou"] == 1.0
    json.dumps(r)  # JSON-ready: None, not NaN
    assert "NaN" not in json.dumps(r)


def test_class_only_predicted_counts_in_mean():
    cm = ConfusionMatrix(3)
    cm.update(np.array([2, 2, 0, 0]), np.array([0, 0, 0, 0]))
    r = cm.result()
    assert r["per_class_iou"] == [0.5, None, 0.0]
    assert r["miou"] == pytest.approx(0.25)


def test_merge_equals_single_accumulation():
    pairs = _random_pairs(3)
    a, b, both = ConfusionMatrix(5), ConfusionMatrix(5), ConfusionMatrix(5)
    for i, (p, g) in enumerate(pairs):
        (a if i % 2 else b).update(p, g)
        both.update(p, g)
    a.merge(b)
    assert np.array_equal(a.matrix, both.matrix)
    assert a.result()["miou"] == both.result()["miou"]
    assert a.num_images == len(pairs)
    with pytest.raises(EdgeDeeplabError):
        a.merge(ConfusionMatrix(4))


def test_batched_update_equals_per_image():
    pairs = _random_pairs(4)
    batch_p = np.stack([p[:12, :17] for p, _ in pairs])
    batch_g = np.stack([g[:12, :17] for _, g in pairs])
    one = ConfusionMatrix(5)
    one.update(batch_p, batch_g)
    many = ConfusionMatrix(5)
    for p, g in zip(batch_p, batch_g):
        many.update(p, g)
    assert np.array_equal(one.matrix, many.matrix)


def test_invalid_predictions_count_as_wrong():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 7, 255, 1]), np.array([0, 1, 1, 1]))
    r = cm.result()
    assert r["invalid_predictions"] == 2
    assert r["per_class_iou"][1] == pytest.approx(1 / 3)
    assert r["pixel_accuracy"] == pytest.approx(0.5)


def test_errors_are_one_line():
    cm = ConfusionMatrix(3)
    with pytest.raises(EdgeDeeplabError, match="shape") as e:
        cm.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    assert_one_line_error(e)
    with pytest.raises(EdgeDeeplabError, match=r"labels \[3, 9\] outside \[0, 3\)") as e:
        cm.update(np.zeros(4, int), np.array([0, 3, 9, 255]))
    assert_one_line_error(e)
    with pytest.raises(EdgeDeeplabError, match="integer") as e:
        cm.update(np.zeros(2, np.float32), np.zeros(2, int))
    assert_one_line_error(e)
    with pytest.raises(EdgeDeeplabError) as e:
        ConfusionMatrix(0)
    assert_one_line_error(e)


def test_empty_result_and_table():
    cm = ConfusionMatrix(2, labels=("bg", "person"))
    r = cm.result()
    assert r["miou"] is None and r["pixel_accuracy"] is None and r["num_images"] == 0
    cm.update(np.array([1, 1, 0]), np.array([1, 0, 0]))
    t = format_table(cm.result())
    assert "person" in t and "mIoU" in t and "50.00%" in t
