"""``edge-deeplab distill`` on real pixels: a student learns the selfie teacher on a real clip.

The cached student (:mod:`tests.support.distilled`) was trained through the CLI on the first 80
frames of the carphone clip; it is scored here on the last 40 against the teacher, both run
independently of edge_deeplab (OpenCV decodes the clip, the LiteRT interpreter runs the teacher,
tf_keras the student).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.real_media import read_video, real_clip

pytestmark = pytest.mark.slow  # trains the student to its target (cached after the first run)

N_TRAIN = 80  # the clip's first 80 frames train; the last 40 are held out


@pytest.fixture(scope="module")
def distilled(pytestconfig, selfie_teacher):
    from tests.support.distilled import distilled_student

    return distilled_student(pytestconfig, selfie_teacher)


def _clip():
    return [np.ascontiguousarray(f[..., ::-1]) for f in read_video(real_clip())]


def _teacher_person(path, frames, size):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    h, w = (int(v) for v in inp["shape"][1:3])
    masks = []
    for rgb in frames:
        x = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        it.set_tensor(inp["index"], x[None])
        it.invoke()
        p = cv2.resize(it.get_tensor(out["index"])[0, ..., 0], size[::-1], interpolation=cv2.INTER_LINEAR)
        masks.append(p > 0.5)
    return np.stack(masks)


def _student_person(keras_path, frames, size):
    import tf_keras

    model = tf_keras.models.load_model(keras_path, compile=False)
    x = np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in frames])
    logits = model.predict(x.astype(np.float32) / 127.5 - 1.0, verbose=0, batch_size=8)
    return np.argmax(logits, -1) == 1


def test_student_matches_the_teacher_on_the_held_out_end_of_a_real_clip(distilled, selfie_teacher):
    frames = _clip()
    held = frames[N_TRAIN:]
    assert len(held) == 40
    size = (128, 128)
    t = _teacher_person(selfie_teacher, held, size)
    s = _student_person(distilled["keras"], held, size)
    assert 0.2 < t.mean() < 0.7, t.mean()  # the man fills a good part of the frame
    iou = float((t & s).sum() / (t | s).sum())
    assert iou >= 0.95, iou
    # The run's own report agrees with the independent score.
    assert abs(distilled["report"]["person_iou"] - iou) < 0.02, (distilled["report"], iou)


def test_held_out_frames_are_the_end_of_the_clip_in_time(distilled):
    manifest = json.loads((Path(distilled["run"]) / "labels" / "manifest.json").read_text())
    frames = {split: sorted(e["frame"] for e in manifest["entries"].values() if e["split"] == split)
              for split in ("train", "val")}
    assert frames["train"] == list(range(N_TRAIN))
    assert frames["val"] == list(range(N_TRAIN, 120))
    assert manifest["complete"] and manifest["skipped"] == {}


def test_report_files_per_source_with_flicker_and_grid(distilled):
    run = Path(distilled["run"])
    report = json.loads((run / "distill_report.json").read_text())
    (src, m), = report["sources"].items()
    assert Path(src).name == "carphone_pristine.mp4" and m["frames"] == 40
    assert m["boundary_f"] > 0.8, m
    # flicker: the student changes about as few pixels between frames as the teacher
    assert 0 < m["flicker_teacher"] < 0.1 and m["flicker_student"] < 2 * m["flicker_teacher"] + 0.01, m
    assert "carphone_pristine.mp4" in (run / "distill_report.md").read_text()
    grid = cv2.imread(str(run / "distill_report.png"))
    assert grid.shape == (6 * 128, 3 * 128, 3), grid.shape
