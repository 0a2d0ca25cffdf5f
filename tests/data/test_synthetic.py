"""The procedural synthetic dataset: determinism, content, folder format, atomic generation."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.data.synthetic import (
    SYNTHETIC_CLASSES,
    default_data_dir,
    ensure_synthetic,
    generate_synthetic,
    is_complete,
    render_scene,
)


def test_render_scene_shapes_and_determinism():
    a_img, a_mask = render_scene(np.random.default_rng(7), (96, 80))
    b_img, b_mask = render_scene(np.random.default_rng(7), (96, 80))
    c_img, _ = render_scene(np.random.default_rng(8), (96, 80))
    assert a_img.shape == (96, 80, 3) and a_img.dtype == np.uint8
    assert a_mask.shape == (96, 80) and a_mask.dtype == np.uint8
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    assert not np.array_equal(a_img, c_img)
    assert int(a_mask.max()) < len(SYNTHETIC_CLASSES)


def test_scenes_cover_every_class_with_variety():
    seen = np.zeros(len(SYNTHETIC_CLASSES), np.int64)
    fg_fracs, multi_object = [], 0
    for i in range(60):
        img, mask = render_scene(np.random.default_rng(i), 64)
        seen += np.bincount(mask.ravel(), minlength=len(SYNTHETIC_CLASSES))
        fg_fracs.append(float((mask > 0).mean()))
        multi_object += len(np.unique(mask)) >= 3
        # Textured: object and background pixels are not flat colours.
        assert img.reshape(-1, 3).std(axis=0).mean() > 10
    assert (seen > 0).all(), f"some class never drawn: {seen}"
    # Person ("person" is the demo's class) appears in many scenes.
    assert SYNTHETIC_CLASSES[1] == "person" and seen[1] > 0.05 * seen.sum()
    # Scale variety and several objects per scene.
    assert min(fg_fracs) < 0.15 and max(fg_fracs) > 0.5
    assert multi_object > 30


def test_person_is_a_head_over_a_torso():
    # Find scenes where a person is fully visible and check the silhouette's shape: narrow on top
    # (head), wide below (shoulders).
    found = 0
    for i in range(200):
        _, mask = render_scene(np.random.default_rng(i), 128, min_objects=1, max_objects=1,
                               person_prob=1.0)
        person = mask == 1
        rows = np.nonzero(person.any(axis=1))[0]
        if rows.size < 40 or rows[0] == 0 or person[:, 0].any() or person[:, -1].any() \
                or person[-1].any():
            continue  # cut by the image border
        widths = person.sum(axis=1)[rows]
        top = widths[: len(widths) // 5].max()
        below = widths[len(widths) // 3:].max()
        assert below > 1.5 * top, (i, top, below)
        found += 1
        if found >= 5:
            break
    assert found >= 5


def test_generate_folder_format_and_determinism(tmp_path):
    from edge_deeplab.data import load_dataset

    a = generate_synthetic(tmp_path / "a", num_train=6, num_val=3, size=48, seed=3)
    b = generate_synthetic(tmp_path / "b", num_train=6, num_val=3, size=48, seed=3)
    c = generate_synthetic(tmp_path / "c", num_train=6, num_val=3, size=48, seed=4)
    assert (a / "labels.txt").read_text().split() == list(SYNTHETIC_CLASSES)
    train_stems = (a / "train.txt").read_text().split()
    val_stems = (a / "val.txt").read_text().split()
    assert len(train_stems) == 6 and len(val_stems) == 3 and not set(train_stems) & set(val_stems)
    for stem in train_stems + val_stems:
        assert (a / "images" / f"{stem}.png").read_bytes() == (b / "images" / f"{stem}.png").read_bytes()
        assert (a / "masks" / f"{stem}.png").read_bytes() == (b / "masks" / f"{stem}.png").read_bytes()
    assert any((a / "images" / f"{s}.png").read_bytes() != (c / "images" / f"{s}.png").read_bytes()
               for s in train_stems)
    # The shared loader reads it: RGB images, index masks in range.
    ds = load_dataset("folder", a, "val")
    assert len(ds) == 3 and ds.num_classes == len(SYNTHETIC_CLASSES)
    image, mask = ds.read(0)
    ref_img, ref_mask = render_scene(np.random.default_rng([3, 1, 0]), 48)
    assert np.array_equal(image, ref_img) and np.array_equal(mask, ref_mask)


def test_ensure_synthetic_default_dir_env_and_reuse(tmp_path, monkeypatch):
    target = tmp_path / "cache" / "syn"
    monkeypatch.setenv("EDGE_DEEPLAB_DATA", str(target))
    assert default_data_dir() == target
    p = ensure_synthetic(num_train=3, num_val=2, size=32)
    assert p == target and is_complete(p)
    stamp = (p / "train.txt").stat().st_mtime_ns
    # A second call reuses it (no regeneration, whatever the requested size).
    assert ensure_synthetic(num_train=50, size=64) == target
    assert (p / "train.txt").stat().st_mtime_ns == stamp
    # Leftovers are never mistaken for a dataset.
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.txt").write_text("x")
    with pytest.raises(EdgeDeeplabError, match="not a complete synthetic dataset"):
        ensure_synthetic(junk)


def test_killed_generation_leaves_no_half_dataset(tmp_path):
    target = tmp_path / "syn"
    code = ("from edge_deeplab.data.synthetic import ensure_synthetic; "
            f"ensure_synthetic({str(target)!r}, num_train=5000, num_val=10, size=64)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        # Wait until images are being written into the temporary directory, then kill.
        deadline = time.time() + 60
        while time.time() < deadline:
            tmps = [d for d in tmp_path.iterdir() if d.name.startswith(".syn.tmp-")]
            if tmps and (tmps[0] / "images").is_dir() and \
                    len(list((tmps[0] / "images").iterdir())) > 20:
                break
            time.sleep(0.1)
        else:
            pytest.fail("generation did not start")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not target.exists(), "a killed generation must not leave the target directory"
    # The next call generates a complete dataset.
    p = ensure_synthetic(target, num_train=4, num_val=2, size=32)
    assert is_complete(p) and len((p / "train.txt").read_text().split()) == 4
    assert len(list((p / "images").iterdir())) == 6

