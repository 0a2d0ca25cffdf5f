"""Compositing, matte refinement and temporal smoothing of the portrait demo (numpy/OpenCV only)."""

import numpy as np
import pytest

from demos import compositing as comp
from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.core.imaging import guided_filter


def _texture(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _disk_alpha(h=120, w=160, r=35, soft=6):
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(yy - h / 2, xx - w / 2)
    return np.clip((r + soft / 2 - d) / soft, 0, 1).astype(np.float32)


@pytest.mark.parametrize("effect", ["blur", "color:10,200,30", "replace", "mask"])
def test_inside_unchanged_outside_effect(effect, tmp_path):
    """Every expectation below is written out by hand: literal colours, never the demo's own
    background or compositing code."""
    import cv2

    # a flat scene (BGR 190, 130, 70) with a textured person disk in the middle
    frame = np.empty((120, 160, 3), np.uint8)
    frame[:] = (190, 130, 70)
    alpha = _disk_alpha()
    inside, outside = alpha == 1.0, alpha == 0.0
    frame[alpha > 0] = _texture()[alpha > 0]
    far = np.zeros_like(outside)
    far[:8], far[-8:], far[:, :8], far[:, -8:] = True, True, True, True  # corners/borders: far outside
    assert inside.sum() > 1000 and (far & outside).sum() > 2000
    if effect == "replace":
        # a 50x90 background of four flat quadrants; covering 120x160 scales it by 2.4 and crops
        # 28 columns off each side, so the frame's corners show the four colours
        bg_img = np.empty((50, 90, 3), np.uint8)
        bg_img[:25, :45], bg_img[:25, 45:] = (10, 20, 30), (40, 50, 60)
        bg_img[25:, :45], bg_img[25:, 45:] = (70, 80, 90), (100, 110, 120)
        p = tmp_path / "bg.png"
        cv2.imwrite(str(p), bg_img)
        effect = f"replace:{p}"
    eff = comp.parse_effect(effect)
    out = comp.apply_effect(frame, alpha, eff)
    assert out.shape == frame.shape and out.dtype == np.uint8
    if eff.kind == "mask":
        assert (out[inside] == 255).all() and (out[outside] == 0).all()
        return
    # Inside the person the frame is untouched, bit for bit.
    np.testing.assert_array_equal(out[inside], frame[inside])
    if eff.kind == "blur":
        # far from the person the blurred flat scene is the flat scene, to a level
        assert np.abs(out[far].astype(int) - (190, 130, 70)).max() <= 1
        # and it blurs: 4-pixel black/white stripes (no person) come out as flat mid grey
        stripes = np.zeros((120, 160, 3), np.uint8)
        stripes[:, (np.arange(160) // 4) % 2 == 1] = 255
        blurred = comp.apply_effect(stripes, np.zeros((120, 160), np.float32), eff)
        assert np.abs(blurred[10:-10, 10:-10].astype(int) - 128).max() <= 4
    elif eff.kind == "color":
        assert (out[outside] == np.array([30, 200, 10], np.uint8)).all()  # BGR of R,G,B=10,200,30
    else:
        assert (out[2:20, 2:20] == (10, 20, 30)).all() and (out[2:20, -20:-2] == (40, 50, 60)).all()
        assert (out[-20:-2, 2:20] == (70, 80, 90)).all() and (out[-20:-2, -20:-2] == (100, 110, 120)).all()


def test_edge_blends_monotonically():
    h, w = 8, 101
    alpha = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))
    frame = np.full((h, w, 3), 220, np.uint8)
    out = comp.apply_effect(frame, alpha, comp.parse_effect("color:20,20,20"))
    row = out[0, :, 0].astype(int)
    assert row[0] == 20 and row[-1] == 220
    assert (np.diff(row) >= 0).all()
    assert len(np.unique(row)) > 50  # a real ramp, not a hard cut
    # On a textured frame each pixel moves monotonically from background to frame as alpha grows.
    tex = _texture(20, 30)
    bg = _texture(20, 30, seed=5)
    prev = None
    for a in np.linspace(0, 1, 11):
        o = comp.composite(tex, bg, np.full((20, 30), a, np.float32)).astype(int)
        dist = np.abs(o - tex.astype(int))
        if prev is not None:
            assert (dist <= prev).all()
        prev = dist
    assert (prev == 0).all()
    # literally: frame 200 over background 100 at alpha 0, 1/4, 1/2, 3/4, 1
    one = comp.composite(np.full((1, 5, 3), 200, np.uint8), np.full((1, 5, 3), 100, np.uint8),
                         np.array([[0, 0.25, 0.5, 0.75, 1]], np.float32))
    assert one[0, :, 0].tolist() == [100, 125, 150, 175, 200]
    # and it is the blend formula (to rounding)
    a = np.random.default_rng(3).random((20, 30)).astype(np.float32)
    ref = bg + a[..., None] * (tex.astype(np.float32) - bg)
    assert np.abs(comp.composite(tex, bg, a).astype(np.float32) - ref).max() <= 1.0


def test_temporal_smoothing_reduces_flicker():
    rng = np.random.default_rng(1)
    truth = _disk_alpha(60, 80, r=20, soft=1)
    raw, smoothed = [], []
    s = comp.TemporalSmoother(0.6)
    for _ in range(40):
        noisy = np.clip(truth + rng.normal(0, 0.25, truth.shape), 0, 1).astype(np.float32)
        flips = rng.random(truth.shape) < 0.05
        noisy[flips] = 1 - noisy[flips]
        raw.append(noisy)
        smoothed.append(s.update(noisy).copy())

    def flicker(seq):
        return float(np.mean([np.abs(a - b).mean() for a, b in zip(seq[1:], seq[:-1])]))

    assert flicker(smoothed) < 0.5 * flicker(raw)
    err_raw = np.mean([np.abs(m - truth).mean() for m in raw[10:]])
    err_s = np.mean([np.abs(m - truth).mean() for m in smoothed[10:]])
    assert err_s < err_raw
    # a new shape (next image of a folder) resets the state instead of mixing images
    fresh = np.zeros((10, 10), np.float32)
    np.testing.assert_array_equal(s.update(fresh), fresh)
    with pytest.raises(EdgeDeeplabError):
        comp.TemporalSmoother(1.0)


def test_guided_filter_preserves_edges():
    h, w, edge = 64, 96, 45
    guide = np.zeros((h, w, 3), np.uint8)
    guide[:, edge:] = 230
    guide[:, :edge] = 25
    truth = np.zeros((h, w), np.float32)
    truth[:, edge:] = 1
    # a blocky, blurry low-resolution mask upsampled to the frame (what a segmenter gives)
    import cv2

    low = cv2.resize(truth, (w // 8, h // 8), interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    radius = 6
    # 1) a correct but noisy mask: the guided filter removes the noise and keeps the edge sharp,
    #    where feathering of the same radius smears it.
    rng = np.random.default_rng(0)
    noisy = np.clip(truth + rng.normal(0, 0.1, truth.shape), 0, 1).astype(np.float32)
    guided = comp.refine_mask(noisy, guide, "guided", radius=radius, eps=1e-3)
    feathered = comp.refine_mask(noisy, guide, "feather", radius=radius)
    assert guided.min() >= 0 and guided.max() <= 1
    assert guided[:, edge - 1].max() < 0.1 and guided[:, edge].min() > 0.9
    assert feathered[:, edge - 1].mean() > 0.2 and feathered[:, edge].mean() < 0.8
    assert guided[:, :edge - 8].std() < noisy[:, :edge - 8].std() / 3  # noise smoothed away
    # 2) a blurry, blocky mask upsampled from low resolution: the output jumps at the image edge.
    g2 = comp.refine_mask(coarse, guide, "guided", radius=radius, eps=1e-3)
    f2 = comp.refine_mask(coarse, guide, "feather", radius=radius)
    jumps = np.diff(g2[h // 2])
    assert int(np.argmax(jumps)) == edge - 1 and jumps.max() > 0.35
    assert np.diff(f2[h // 2]).max() < 0.15 and np.diff(coarse[h // 2]).max() < 0.15
    band = slice(edge - 8, edge + 8)
    err = lambda m: float(np.abs(m[:, band] - truth[:, band]).mean())  # noqa: E731
    assert err(g2) < err(f2) and err(g2) < err(coarse)
    # the fast (subsampled) variant agrees closely
    fast = guided_filter(guide, coarse, radius, eps=1e-3, subsample=2)
    assert float(np.abs(np.clip(fast, 0, 1) - g2).mean()) < 0.05


def test_parse_effect_errors(tmp_path):
    for bad in ("sparkle", "color:1,2", "color:300,0,0", "color", "replace", "blur:x"):
        with pytest.raises(EdgeDeeplabError):
            comp.parse_effect(bad)
    with pytest.raises(EdgeDeeplabError, match="not found"):
        comp.parse_effect(f"replace:{tmp_path / 'missing.png'}")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(EdgeDeeplabError, match="corrupt"):
        comp.parse_effect(f"replace:{junk}")
    assert comp.parse_effect("color:255,0,0").color == (0, 0, 255)


def test_effect_cycle_and_overlay():
    cyc = comp.effect_cycle(comp.parse_effect("color:1,2,3"))
    assert [e.kind for e in cyc] == ["color", "blur", "mask"]
    img = np.full((100, 200, 3), 200, np.uint8)
    comp.draw_overlay(img, ["12.3 FPS", "inf 4.5 ms"])
    assert (img[:10, :10] != 200).any()          # drawn in the top-left
    assert (img[-20:, -20:] == 200).all()        # nothing elsewhere
