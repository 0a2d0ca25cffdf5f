"""The labelling pass: the teacher runs once per frame; reruns reuse, interruptions continue."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from edge_deeplab.data.frame_sources import resolve_sources
from edge_deeplab.data.soft_labels import SoftLabelStore
from edge_deeplab.runtime.labelling import label_sources
from edge_deeplab.runtime.teacher import open_teacher, parse_range
from tests.support.real_media import real_clip, real_photos

CLASSES = ["background", "person"]


class Counting:
    """The real teacher, counting the frames it is asked to label."""

    def __init__(self, teacher):
        self.teacher, self.calls = teacher, 0
        self.labels = teacher.labels

    def describe(self):
        return self.teacher.describe()

    def probabilities(self, rgb):
        self.calls += 1
        return self.teacher.probabilities(rgb)


@pytest.fixture(scope="module")
def teacher(selfie_teacher):
    return open_teacher(selfie_teacher, normalization=parse_range("0,1"))


def test_interrupted_pass_continues_and_a_rerun_labels_nothing(teacher, tmp_path):
    src = resolve_sources([str(real_clip())], stride=4)  # 30 of the 120 frames
    root = tmp_path / "labels"
    t = Counting(teacher)
    m = label_sources(t, src, CLASSES, root, val_fraction=0.2, limit=12, verbose=0)
    assert not m["complete"] and len(m["entries"]) == 12 and t.calls == 12
    m = label_sources(t, src, CLASSES, root, val_fraction=0.2, verbose=0)
    assert m["complete"] and len(m["entries"]) == 30 and t.calls == 30  # only the 18 missing
    m = label_sources(t, src, CLASSES, root, val_fraction=0.2, verbose=0)
    assert t.calls == 30
    store = SoftLabelStore(root)
    store.load()
    # The last 20% in time are held out: used frames 24..29 (decoded frames 96..116).
    assert [store.entry(s)["frame"] for s in store.stems("val")] == list(range(24, 30))
    assert (root / "val.txt").read_text().split() == store.stems("val")
    # The cached labels are the teacher's: frame 5 (decoded frame 20) against the interpreter.
    cap = cv2.VideoCapture(str(real_clip()))
    for _ in range(21):
        ok, bgr = cap.read()
    cap.release()
    stem = next(s for s in store.stems("train") if store.entry(s)["frame"] == 5)
    assert np.array_equal(store.read_image(stem), bgr[..., ::-1])
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(teacher.path))
    it.allocate_tensors()
    # the 144x176 frame is enlarged to the teacher's 256x256 bilinearly
    x = cv2.resize(bgr[..., ::-1], (256, 256), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    it.set_tensor(it.get_input_details()[0]["index"], x[None])
    it.invoke()
    p = cv2.resize(it.get_tensor(it.get_output_details()[0]["index"])[0, ..., 0], (176, 144))
    soft = store.read_soft(stem)
    assert soft.shape == (144, 176, 2)
    assert np.abs(soft[..., 1].astype(float) - 255 * p).max() <= 1.0
    assert np.abs(soft.astype(int).sum(-1) - 255).max() <= 1
    mask = cv2.imread(str(root / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
    assert 0.2 < mask.mean() < 0.7 and np.mean(mask != (p > 0.5)) < 1e-3


def test_labels_of_another_class_set_are_refused(teacher, tmp_path):
    src = resolve_sources([str(real_clip())], stride=30)
    label_sources(teacher, src, CLASSES, tmp_path / "labels", verbose=0)
    with pytest.raises(Exception, match="another teacher or class set"):
        label_sources(teacher, src, ["person", "background"], tmp_path / "labels", verbose=0)


def test_undecodable_frames_are_skipped_and_counted(teacher, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photos = real_photos()
    for i, name in enumerate(("astronaut", "camera", "grass")):
        shutil.copy(photos[name], folder / f"{i}_{name}.png")
    (folder / "1b_broken.png").write_bytes(photos["coffee"].read_bytes()[:300])  # truncated
    src = resolve_sources([str(folder)])
    m = label_sources(teacher, src, CLASSES, tmp_path / "labels", val_fraction=0.25, verbose=0)
    assert m["skipped"] == {str(folder.resolve()): [2]}  # sorted: 0_, 1_, 1b_, 2_
    store = SoftLabelStore(tmp_path / "labels")
    store.load()
    assert len(store.stems("train")) == 2 and len(store.stems("val")) == 1
    # the astronaut is a person to the teacher, the grass is not
    person = {store.entry(s)["frame"]: store.read_soft(s)[..., 1].mean() / 255
              for s in store.stems("train") + store.stems("val")}
    assert person[0] > 0.1 and person[3] < 0.02, person


def test_explicit_held_out_sources_hold_out_whole_sources(teacher, tmp_path):
    folder = tmp_path / "people"
    folder.mkdir()
    photos = real_photos()
    for name in ("astronaut", "camera"):
        shutil.copy(photos[name], folder / f"{name}.png")
    clip = resolve_sources([str(real_clip())], stride=30)  # 4 frames, all training
    m = label_sources(teacher, clip, CLASSES, tmp_path / "labels", val_fraction=0.5,
                      val_sources=resolve_sources([str(folder)]), verbose=0)
    by_split = {}
    for e in m["entries"].values():
        by_split.setdefault(e["split"], set()).add((e["source"], e["frame"]))
    assert by_split["train"] == {(str(real_clip().resolve()), i) for i in range(4)}
    assert by_split["val"] == {(str(folder.resolve()), 0), (str(folder.resolve()), 1)}


def test_labelling_progress_in_a_log_is_one_line_per_interval(teacher, tmp_path, capsys):
    """Piped into a log (stderr not a terminal), the pass reports through the one progress line of
    :mod:`edge_deeplab.core.progress`: whole lines, frames counted up to the total, then the summary."""
    import re

    src = resolve_sources([str(real_clip())], stride=12)  # 10 of the 120 frames
    label_sources(teacher, src, CLASSES, tmp_path / "labels", val_fraction=0.2, verbose=1)
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    progress = [ln for ln in lines if ln.startswith("labelling:")]
    counts = [int(re.match(r"labelling: frame (\d+)/10 \((\d+)%\)", ln).group(1)) for ln in progress]
    assert counts == list(range(1, 11)), lines  # every 5% of 10 frames: each frame
    assert lines[-1].startswith("labels: 8 training and 2 held-out frames (10 new)"), lines
