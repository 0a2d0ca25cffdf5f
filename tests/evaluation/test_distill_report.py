"""The distillation report's metrics against hand-computed values."""

from __future__ import annotations

import numpy as np

from edge_deeplab.evaluation.distill_report import boundary_f, score_frames


def _square(y0, x0, n=8, size=32):
    m = np.zeros((size, size), np.uint8)
    m[y0:y0 + n, x0:x0 + n] = 1
    return m


def test_boundary_f_counts_edge_pixels_within_the_band():
    a = _square(8, 8)
    assert boundary_f(a, a, band=0) == 1.0
    # shifted by 1 px: every edge pixel of one lies within 1 px of the other's edge
    assert boundary_f(a, np.roll(a, 1, axis=1), band=1) == 1.0
    # shifted by 4 px: counted by brute force over the two 28-pixel contours (band 2 = Chebyshev 2)
    b = np.roll(a, 4, axis=1)
    te = a.astype(bool) & ~np.pad(a[1:-1, 1:-1] & a[:-2, 1:-1] & a[2:, 1:-1] & a[1:-1, :-2] & a[1:-1, 2:],
                                  1).astype(bool)
    se = np.roll(te, 4, axis=1)
    ys, xs = np.nonzero(te)
    ys2, xs2 = np.nonzero(se)

    def near(y, x, ys_, xs_):
        return bool(np.any((np.abs(ys_ - y) <= 2) & (np.abs(xs_ - x) <= 2)))

    precision = np.mean([near(y, x, ys, xs) for y, x in zip(ys2, xs2)])
    recall = np.mean([near(y, x, ys2, xs2) for y, x in zip(ys, xs)])
    want = 2 * precision * recall / (precision + recall)
    assert abs(boundary_f(a, b, band=2) - want) < 1e-9 and 0.2 < want < 0.9
    assert boundary_f(a, np.zeros_like(a)) == 0.0 and boundary_f(0 * a, 0 * a) == 1.0


def test_scores_iou_and_flicker():
    t = np.stack([_square(8, 8), _square(8, 8), _square(8, 9)])
    s = np.stack([_square(8, 8), _square(8, 10), _square(8, 8)])
    m = score_frames(t, s, num_classes=2, person=1, video=True)
    inter = (t & s).sum()
    union = (t | s).sum()
    assert abs(m["person_iou"] - inter / union) < 1e-12
    bg = ((t == 0) & (s == 0)).sum() / ((t == 0) | (s == 0)).sum()
    assert abs(m["miou"] - (inter / union + bg) / 2) < 1e-12
    # teacher: still, then a 1-px shift (2 columns of 8 change); student: 2-px shifts twice
    assert m["flicker_teacher"] == 16 / 2048 and m["flicker_student"] == 64 / 2048
    assert "flicker_student" not in score_frames(t, s, 2, 1, video=False)
