"""Teacher adapters: multi-class logits, class maps and Keras models read as probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from edge_deeplab.core.errors import EdgeDeeplabError
from edge_deeplab.runtime.teacher import class_map, open_teacher
from tests.support.segmentation_models import LABELS, colour_rule


def _image(seed=0, size=64):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return np.kron(img, np.ones((8, 8, 1), np.uint8))  # 8x8 colour blocks


def _interpreter_output(path, image):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(inp["index"], (image.astype(np.float32) / 127.5 - 1.0)[None])
    it.invoke()
    return it.get_tensor(out["index"])[0]


@pytest.fixture(scope="module")
def logits_tflite(pytestconfig):
    from tests.support.tiny import tiny_tflite

    return tiny_tflite(pytestconfig, "float32", weights="colour")


def test_logits_teacher_gives_softmax_with_its_metadata_labels(logits_tflite):
    t = open_teacher(logits_tflite)  # labels and normalization from the export's metadata
    assert t.labels == list(LABELS) and t.kind == "softmax"
    img = _image()
    z = _interpreter_output(logits_tflite, img)
    want = np.exp(z - z.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    p = t.probabilities(img)
    assert p.shape == (64, 64, 3) and np.abs(p - want).max() < 1e-5
    assert np.mean(p.argmax(-1) == colour_rule(img)) > 0.95  # the colour rule decides


def test_classmap_teacher_is_one_hot(pytestconfig):
    from tests.support.tiny import tiny_tflite

    path = tiny_tflite(pytestconfig, "float32", weights="colour", options={"output": "classmap"})
    t = open_teacher(path)
    assert t.kind == "classmap"
    img = _image(1)
    cls = _interpreter_output(path, img)
    p = t.probabilities(img)
    assert np.array_equal(p.argmax(-1), cls) and set(np.unique(p)) <= {0.0, 1.0}


def test_keras_teacher_matches_its_tflite_export(logits_tflite, tmp_path):
    from edge_deeplab.model.model_io import save_model
    from tests.support.tiny import tiny_model

    model, cfg = tiny_model(weights="colour")
    path = save_model(model, tmp_path / "teacher.keras", cfg)
    t = open_teacher(path)
    assert t.labels == list(LABELS) and t.kind == "softmax" and t.input_size == (64, 64)
    img = _image(2)
    ref = open_teacher(logits_tflite).probabilities(img)
    assert np.abs(t.probabilities(img) - ref).max() < 1e-3


def test_teacher_classes_map_by_name_onto_the_student(logits_tflite):
    t = open_teacher(logits_tflite)
    mapping = class_map(t.labels, ["background", "person"])
    assert mapping == [[0, 2], [1]]  # sky folds into background
    with pytest.raises(EdgeDeeplabError, match=r"\[background, person, sky\].*\[background, cat\]"):
        class_map(t.labels, ["background", "cat"])


def test_a_teacher_that_is_not_a_model(tmp_path):
    bad = tmp_path / "teacher.tflite"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(EdgeDeeplabError, match="not a valid TFLite model"):
        open_teacher(bad)
    onnx = tmp_path / "teacher.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(EdgeDeeplabError, match="expected a .tflite, .keras or .h5"):
        open_teacher(onnx)
