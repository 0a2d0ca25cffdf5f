"""``edge-deeplab distill`` refuses bad input in one line, before labelling or training starts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge_deeplab.app.cli import main
from tests.support.cli import assert_one_line_error
from tests.support.real_media import real_clip, real_photos

PREFIX = "edge-deeplab distill: error:"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A real image classifier .tflite (32x32 RGB -> 10 class scores), not a segmenter."""
    from edge_deeplab.core._tf import keras, tf

    x = keras.Input((32, 32, 3))
    y = keras.layers.Conv2D(4, 3)(x)
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = keras.Model(x, keras.layers.Dense(10, activation="softmax")(y))
    path = tmp_path_factory.mktemp("classifier") / "classifier.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _distill(teacher, out, *extra, images=None):
    return main(["distill", "--teacher", str(teacher), "--images", *(images or [str(real_clip())]),
                 "--out", str(out), "--teacher-range", "0,1", "--steps", "2", *extra])


def _nothing_started(out):
    assert not (out / "labels").exists() and not (out / "checkpoints").exists()


def test_a_classifier_is_not_a_teacher(classifier, tmp_path, capsys):
    rc = _distill(classifier, tmp_path / "run")
    assert_one_line_error(capsys.readouterr(), "classifier.tflite is not an image segmentation model",
                          "[1, 10]", rc=rc, prefix=PREFIX)
    _nothing_started(tmp_path / "run")


def test_unmappable_classes_list_both_label_sets(selfie_teacher, tmp_path, capsys):
    rc = _distill(selfie_teacher, tmp_path / "run", "--classes", "background,car")
    line = assert_one_line_error(capsys.readouterr(), "[background, person]", "[background, car]",
                                 "'car'", rc=rc, prefix=PREFIX)
    assert "cannot map" in line
    _nothing_started(tmp_path / "run")


def test_teacher_without_normalization_needs_a_range(selfie_teacher, tmp_path, capsys):
    rc = main(["distill", "--teacher", str(selfie_teacher), "--images", str(real_clip()),
               "--out", str(tmp_path / "run")])
    assert_one_line_error(capsys.readouterr(), "carries no input normalization", "--teacher-range",
                          rc=rc, prefix=PREFIX)


def test_a_source_with_no_decodable_frame(selfie_teacher, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"f{i}.jpg").write_bytes(b"not a jpeg at all" * (i + 1))
    rc = _distill(selfie_teacher, tmp_path / "run", images=[str(real_clip()), str(bad)])
    assert_one_line_error(capsys.readouterr(), "no frame of source", str(bad), rc=rc, prefix=PREFIX)
    _nothing_started(tmp_path / "run")


def test_a_glob_matching_nothing(selfie_teacher, tmp_path, capsys):
    rc = _distill(selfie_teacher, tmp_path / "run", images=[str(tmp_path / "*.mp4")])
    assert_one_line_error(capsys.readouterr(), "matches no image, video or folder", rc=rc, prefix=PREFIX)


def test_fewer_frames_than_a_batch(selfie_teacher, tmp_path, capsys):
    photos = real_photos()
    folder = tmp_path / "few"
    folder.mkdir()
    for name in ("astronaut", "camera", "coffee"):
        shutil.copy(photos[name], folder / f"{name}.png")
    rc = _distill(selfie_teacher, tmp_path / "run", "--batch-size", "4", "--val-fraction", "0",
                  images=[str(folder)])
    assert_one_line_error(capsys.readouterr(), "3 training frame(s) are fewer than a batch (4)",
                          rc=rc, prefix=PREFIX)
    _nothing_started(tmp_path / "run")


def test_out_holding_a_foreign_run_is_refused(selfie_teacher, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_config.json").write_text(json.dumps({"model": {}, "train": {}}))
    (out / "model.keras").write_bytes(b"finished work")
    rc = _distill(selfie_teacher, out)
    assert_one_line_error(capsys.readouterr(), "not a distill run", "model.keras", rc=rc, prefix=PREFIX)
    assert (out / "model.keras").read_bytes() == b"finished work"
    _nothing_started(out)


def test_resume_of_nothing_is_an_error(selfie_teacher, tmp_path, capsys):
    rc = _distill(selfie_teacher, tmp_path / "missing", "--resume")
    assert_one_line_error(capsys.readouterr(), "--resume", "start without --resume", rc=rc, prefix=PREFIX)
    assert not (tmp_path / "missing").exists()


def test_teacher_labels_that_do_not_fit(selfie_teacher, tmp_path, capsys):
    rc = _distill(selfie_teacher, tmp_path / "run", "--teacher-labels", "a,b,c")
    assert_one_line_error(capsys.readouterr(), "has 2 classes but 3 labels", rc=rc, prefix=PREFIX)


def test_class_map_folds_unnamed_teacher_classes_into_background():
    from edge_deeplab.runtime.teacher import class_map

    assert class_map(["Background", "cat", "Person", "dog"], ["background", "person"]) == [[0, 1, 3], [2]]
    assert class_map(["person", "car"], ["car", "person"]) == [[1], [0]]
    with pytest.raises(Exception, match="no 'background' to fold"):
        class_map(["person", "car", "dog"], ["car", "person"])
    assert np.array_equal(class_map(["background", "person"], ["background", "person"]), [[0], [1]])
