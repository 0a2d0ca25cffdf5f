"""Distillation mechanics on the project's own models: a larger synthetic-trained teacher, a small
student distilled from it on unlabeled synthetic scenes reaches >= 0.9 of the teacher's held-out
mIoU (issue 19).

Everything runs through the CLI as a user would: ``train`` makes the teacher (alpha 1.0) on the
labeled scenes, ``distill`` trains the alpha-0.35 student on *other*, unlabeled scenes (their
masks are never read). Both are then scored against the ground truth of held-out scenes neither
saw, independently of edge_deeplab (tf_keras runs the models, a NumPy confusion matrix scores them).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

#: Trains a teacher and a student: about 6 minutes on 2 idle cores, 15 at load 8 (past pytest.ini's
#: 900 s), hence its own limit.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SIZE = 64
CLASSES = ("background", "person", "ball", "box", "cone")
#: The teacher: alpha 1.0 (about 8x the student's backbone width-squared), the fast preset's heads.
TEACHER = ["--preset", "fast", "--input-size", str(SIZE), "--alpha", "1.0", "--steps", "600",
           "--batch-size", "8", "--checkpoint-every", "600", "--min-scale", "0.75",
           "--max-scale", "1.25", "--warmup-steps", "10"]
#: The student: the recipe's alpha 0.35 at the scenes' size; no colour jitter or copy-paste (the
#: synthetic scenes' classes are their colours and shapes). Measured on 2 shared Zen 4 cores
#: (teacher held-out mIoU 0.713): 600 steps with --jitter 0.5 gave the student 0.623 (0.87 of the
#: teacher's); 1500 steps with --jitter 0 gave 0.727 (1.02), in 141 s of training.
STUDENT = ["--input-size", str(SIZE), "--alpha", "0.35", "--steps", "1500", "--batch-size", "8",
           "--checkpoint-every", "500", "--min-scale", "0.75", "--max-scale", "1.25",
           "--classes", ",".join(CLASSES), "--copy-paste", "0", "--jitter", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from edge_deeplab.app.cli import main
    from edge_deeplab.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("mechanics")
    labeled = generate_synthetic(root / "labeled", num_train=240, num_val=48, size=SIZE, seed=0)
    # other scenes (another seed) whose images alone the student sees
    pool = generate_synthetic(root / "pool", num_train=480, num_val=0, size=SIZE, seed=7)
    dval = generate_synthetic(root / "dval", num_train=0, num_val=32, size=SIZE, seed=8)
    assert main(["train", "--dataset", "folder", "--data-dir", str(labeled), "--out",
                 str(root / "teacher"), *TEACHER]) == 0
    assert main(["distill", "--teacher", str(root / "teacher" / "model.keras"),
                 "--images", str(pool / "images"), "--val-images", str(dval / "images"),
                 "--out", str(root / "student"), *STUDENT]) == 0
    return {"labeled": labeled, "teacher": root / "teacher" / "model.keras",
            "student": root / "student" / "model.keras", "run": root / "student"}


def _held_out(labeled: Path):
    stems = (labeled / "val.txt").read_text().split()
    images = np.stack([cv2.cvtColor(cv2.imread(str(labeled / "images" / f"{s}.png")), cv2.COLOR_BGR2RGB)
                       for s in stems])
    masks = np.stack([np.asarray(Image.open(labeled / "masks" / f"{s}.png")) for s in stems])
    return images, masks


def _miou(keras_path, images, masks) -> float:
    import tf_keras

    model = tf_keras.models.load_model(keras_path, compile=False)
    pred = np.argmax(model.predict(images.astype(np.float32) / 127.5 - 1.0, verbose=0, batch_size=16), -1)
    c = len(CLASSES)
    conf = np.bincount(masks.reshape(-1).astype(np.int64) * c + pred.reshape(-1), minlength=c * c)
    conf = conf.reshape(c, c)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    return float(np.mean(inter[union > 0] / union[union > 0]))


def test_small_student_reaches_nine_tenths_of_the_teachers_held_out_miou(runs):
    images, masks = _held_out(runs["labeled"])
    assert len(images) == 48 and set(np.unique(masks)) <= set(range(len(CLASSES)))
    teacher = _miou(runs["teacher"], images, masks)
    student = _miou(runs["student"], images, masks)
    assert teacher >= 0.5, teacher  # a teacher worth distilling
    assert student >= 0.9 * teacher, (student, teacher)
    # the student really is the smaller model, and it never read a mask of the pool
    t_cfg = json.loads((runs["teacher"].parent / "train_config.json").read_text())["model"]
    s_cfg = json.loads((runs["run"] / "train_config.json").read_text())["model"]
    assert (t_cfg["alpha"], s_cfg["alpha"]) == (1.0, 0.35)
    manifest = json.loads((runs["run"] / "labels" / "manifest.json").read_text())
    assert all("pool" in e["source"] or "dval" in e["source"] for e in manifest["entries"].values())
