"""The real pixels the tests use (:mod:`tests.support.real_media`) are what they claim to be.

A clip with a person, photos with and without people, and a real person segmenter that finds the
person: checked with OpenCV and the LiteRT interpreter directly, independent of edge_deeplab.
"""

from __future__ import annotations

import cv2
import numpy as np

from tests.support.real_media import PEOPLE, SCENES, read_video, real_clip, real_photos


def test_real_clip_decodes_with_a_person_sized_frame():
    frames = read_video(real_clip())
    assert len(frames) >= 100, len(frames)
    assert frames[0].shape == (144, 176, 3)
    # real video: consecutive frames differ, but only a little (not noise, not a still)
    d = np.abs(frames[1].astype(int) - frames[0].astype(int)).mean()
    assert 0.5 < d < 30, d


def test_real_photos_load():
    photos = real_photos()
    assert set(photos) == set(PEOPLE) | set(SCENES)
    for name, p in photos.items():
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        assert img is not None and min(img.shape[:2]) >= 256, (name, None if img is None else img.shape)


def _teacher_person(path, rgb):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    h, w = inp["shape"][1:3]
    x = cv2.resize(rgb, (int(w), int(h)), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    it.set_tensor(inp["index"], x[None])
    it.invoke()
    return it.get_tensor(out["index"])[0, ..., 0]


def test_selfie_teacher_finds_the_person(selfie_teacher):
    """The teacher (256x256 RGB in [0, 1], one sigmoid channel) marks the astronaut and the
    cameraman, and nothing of grass or a brick wall. (A selfie model marks any large centred
    foreground object: measured, it calls 91% of the ``chelsea`` cat and 19% of ``coffee`` a person.)"""
    photos = real_photos()
    frac = {n: float((_teacher_person(selfie_teacher, cv2.imread(str(photos[n]))[..., ::-1]) > 0.5).mean())
            for n in ("astronaut", "camera", "grass", "brick")}
    print(f"teacher person fraction: {frac}")  # measured: 0.545, 0.325, 0.0, 0.0
    assert frac["astronaut"] > 0.4 and frac["camera"] > 0.2
    assert frac["grass"] < 0.02 and frac["brick"] < 0.02
    m = _teacher_person(selfie_teacher, cv2.imread(str(photos["astronaut"]))[..., ::-1])
    assert m.shape == (256, 256) and 0.0 <= m.min() and m.max() <= 1.0
