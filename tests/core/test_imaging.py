"""Shared imaging helpers: reading images (colour order in the name), size strings, letterbox."""

import numpy as np
import pytest
from PIL import Image

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import (
    crop_box,
    letterbox,
    parse_size,
    read_image_bgr,
    read_image_rgb,
)


def _texture(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_letterbox_and_crop_roundtrip():
    img = _texture(90, 160)
    canvas, box = letterbox(img, (64, 64), pad_value=7)
    top, left, bh, bw = box
    assert canvas.shape == (64, 64, 3)
    assert (bh, bw) == (36, 64) and top == 14 and left == 0
    assert (canvas[:top] == 7).all() and (canvas[top + bh:] == 7).all()
    crop = crop_box(canvas, box)
    assert crop.shape[:2] == (36, 64)
    assert not (crop == 7).all()
    # a model whose output is at half resolution: the box scales with it
    half = crop_box(np.zeros((32, 32)), box, input_size=(64, 64))
    assert half.shape == (18, 32)
    # tall images pad left/right
    _, box2 = letterbox(_texture(160, 90), (64, 64))
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
