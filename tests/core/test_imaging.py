"""Shared imaging helpers: reading images (colour order in the name), size strings, crop boxes."""

import numpy as np
import pytest
from PIL import Image

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import (
    crop_box,
    fast_guided_filter,
    low_res_size,
    parse_size,
    read_image_bgr,
    read_image_rgb,
)
from edge_deeplab.core.pixels import fit_box, resize


def _texture(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_fit_box_and_crop_roundtrip():
    img = _texture(90, 160)
    box = fit_box(img.shape[:2], (64, 64))
    top, left, bh, bw = box
    assert (bh, bw) == (36, 64) and top == 14 and left == 0
    canvas = np.full((64, 64, 3), 7, np.uint8)
    canvas[top:top + bh, left:left + bw] = resize(img, (bh, bw))
    crop = crop_box(canvas, box)
    assert crop.shape[:2] == (36, 64)
    assert (crop == resize(img, (bh, bw))).all()  # exactly the placed image, no padding
    # a model whose output is at half resolution: the box scales with it
    half = crop_box(np.zeros((32, 32)), box, input_size=(64, 64))
    assert half.shape == (18, 32)
    # tall images pad left/right
    box2 = fit_box((160, 90), (64, 64))
    assert box2[0] == 0 and box2[2] == 64 and box2[1] > 0


def test_read_image_colour_order(tmp_path):
    img = np.zeros((4, 6, 3), np.uint8)
    img[..., 0] = 200  # red in RGB
    p = tmp_path / "red.png"
    Image.fromarray(img).save(p)
    assert read_image_rgb(p)[0, 0].tolist() == [200, 0, 0]
    assert read_image_bgr(p)[0, 0].tolist() == [0, 0, 200]
    for read in (read_image_rgb, read_image_bgr):
        with pytest.raises(EdgeDeeplabError, match="not found"):
            read(tmp_path / "nope.png")


def test_parse_size():
    assert parse_size(32) == (32, 32) and parse_size("64") == (64, 64)
    assert parse_size("256x128") == (256, 128) and parse_size((3, 5)) == (3, 5)
    for bad in ("abc", "1x2x3", (1, 2, 3)):
        with pytest.raises(EdgeDeeplabError, match="input size must be N or"):
            parse_size(bad)


def test_low_res_size_is_a_whole_fraction_of_the_frame():
    assert low_res_size((480, 640)) == (240, 320)
    assert low_res_size((720, 1280)) == (180, 320)
    assert low_res_size((1080, 1920)) == (270, 480)
    assert low_res_size((2160, 3840)) == (270, 480)  # at most 1/8
    assert low_res_size((100, 100)) == (100, 100)


def test_fast_guided_filter_snaps_a_coarse_mask_to_the_image_edge():
    import cv2

    h, w, edge = 240, 320, 163
    guide = np.full((h, w, 3), 30, np.uint8)
    guide[:, edge:] = 220
    truth = np.zeros((h, w), np.float32)
    truth[:, edge:] = 1
    # what a segmenter gives: a blurry mask at 1/4 resolution, its edge 6 px off
    coarse = np.zeros((h // 4, w // 4), np.float32)
    coarse[:, (edge - 6) // 4:] = 1
    coarse = cv2.GaussianBlur(coarse, (0, 0), 2)
    q = fast_guided_filter(guide, coarse, radius=8, eps=1e-3)
    assert q.dtype == np.float32 and q.shape == (h, w) and q.min() >= 0 and q.max() <= 1
    jumps = np.diff(q[h // 2])
    up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    assert int(np.argmax(jumps)) == edge - 1  # the edge is the image's, a sharp step
    assert jumps.max() > 0.35 and jumps.max() > 3 * np.diff(up[h // 2]).max()
    band = slice(edge - 12, edge + 12)
    assert np.abs(q[:, band] - truth[:, band]).mean() < 0.8 * np.abs(up[:, band] - truth[:, band]).mean()
    # levels folded in == the levels stretch applied afterwards
    lv = fast_guided_filter(guide, coarse, radius=8, eps=1e-3, levels=(0.2, 0.7))
    np.testing.assert_allclose(lv, np.clip((q - 0.2) / 0.5, 0, 1), atol=1e-5)
    with pytest.raises(EdgeDeeplabError, match="uint8"):
        fast_guided_filter(guide.astype(np.float32), coarse, 8)
    with pytest.raises(EdgeDeeplabError, match="larger"):
        fast_guided_filter(guide[:10, :10], coarse, 8)
    with pytest.raises(EdgeDeeplabError, match="levels"):
        fast_guided_filter(guide, coarse, 8, levels=(0.8, 0.2))
