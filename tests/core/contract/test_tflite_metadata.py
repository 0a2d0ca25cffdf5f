"""Standard TFLite metadata: writer/reader round trip, zip of associated files, malformed input."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from edge_deeplab.core.contract.tflite_metadata import (
    LABELS_FILE,
    mediapipe_compatibility,
    read_standard_metadata,
    write_standard_metadata,
)
from edge_deeplab.core.contract.tflite_metadata._segmenter import (
    build_segmenter_options,
    parse_segmenter_options,
)
from edge_deeplab.core.contract.tflite_metadata.writer import replace_metadata_entry
from edge_deeplab.core.errors import EdgeDeeplabError
from tests.support.cli import assert_one_line_error

LABELS = ["background", "person"]
COMMON = dict(name="tiny", description="a 1x1 conv", version="7", author="tests",
              toolkit_version="9.9", labels=LABELS, mean=[127.5], std=[127.5], input_range=None,
              output_kind="logits", activation=None)


@pytest.fixture(scope="module")
def tiny_tflite() -> bytes:
    """A foreign (non-edge_deeplab) float model: (1, 8, 8, 3) image -> (1, 8, 8, 2) scores."""
    from edge_deeplab.core._tf import tf

    w = tf.constant(np.array([[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0]], np.float32).reshape(1, 1, 3, 2))

    @tf.function(input_signature=[tf.TensorSpec((1, 8, 8, 3), tf.float32, name="pixels")])
    def f(x):
        return tf.nn.conv2d(x, w, 1, "SAME")

    return bytes(tf.lite.TFLiteConverter.from_concrete_functions(
        [f.get_concrete_function()]).convert())


def test_round_trip(tiny_tflite):
    data = write_standard_metadata(tiny_tflite, **{**COMMON, "extra_json": {"k": np.float32(1.5)}})
    m = read_standard_metadata(data)
    assert (m.name, m.description, m.version, m.author) == ("tiny", "a 1x1 conv", "7", "tests")
    assert m.labels == tuple(LABELS) and m.labels_file == LABELS_FILE
    assert m.normalization() == ((127.5,) * 3, (127.5,) * 3)
    assert m.input_min == (-1.0,) * 3 and m.input_max == (1.0,) * 3
    assert (m.input_color_space, m.output_color_space) == ("rgb", "grayscale")
    assert (m.activation, m.output_kind, m.toolkit_version) == ("softmax", "logits", "9.9")
    assert m.extra_json == {"k": 1.5}
    assert m.min_parser_version == "1.5.0"
    d = m.to_contract_dict()
    assert d["labels"] == LABELS and d["output"] == "logits" and d["normalize_in_graph"] is False
    # associated files: an uncompressed zip appended after the flatbuffer
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read(LABELS_FILE).decode().splitlines() == LABELS
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    assert data.startswith(data[:8]) and data[4:8] == b"TFL3"
    # the model still loads and runs in LiteRT with the zip on its end
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.ones((1, 8, 8, 3), np.float32))
    it.invoke()
    assert mediapipe_compatibility(data).accepted


def test_rewrite_replaces_and_keeps_other_entries(tiny_tflite):
    from edge_deeplab.core.contract.metadata import embed_metadata, read_tflite_metadata
    from tests.support.export_models import metadata_names

    ours = embed_metadata(tiny_tflite, {"labels": LABELS, "output": "logits"})
    once = write_standard_metadata(ours, **COMMON)
    twice = write_standard_metadata(once, **{**COMMON, "labels": ["a", "b"], "mean": [0],
                                             "std": [1], "activation": "none"})
    names = metadata_names(twice)
    assert names.count("TFLITE_METADATA") == 1 and "edge_deeplab" in names
    assert read_tflite_metadata(twice)["labels"] == LABELS  # our JSON entry survives
    m = read_standard_metadata(twice)
    assert m.labels == ("a", "b") and m.mean == (0.0,) * 3 and m.activation == "none"
    assert m.input_min == (0.0,) * 3 and m.input_max == (255.0,) * 3
    with zipfile.ZipFile(io.BytesIO(twice)) as zf:
        assert zf.namelist() == [LABELS_FILE]  # the old archive was dropped, not stacked


@pytest.mark.parametrize("kw, msg", [
    (dict(labels=["only-one"]), "1 labels given for a model with 2 classes"),
    (dict(labels=["a", ""]), "non-empty"),
    (dict(mean=[1, 2]), "1 or 3 values"),
    (dict(std=[0]), "non-zero"),
    (dict(output_kind="boxes"), "output kind"),
    (dict(activation="relu"), "activation"),
])
def test_writer_errors_are_one_line(tiny_tflite, kw, msg):
    with pytest.raises(EdgeDeeplabError, match=msg) as e:
        write_standard_metadata(tiny_tflite, **{**COMMON, **kw})
    assert_one_line_error(e)


def test_foreign_model_without_metadata(tiny_tflite):
    assert read_standard_metadata(tiny_tflite) is None
    c = mediapipe_compatibility(tiny_tflite)
    assert not c.accepted and "NormalizationOptions" in c.problems[0]
    assert "refuses" in c.summary()


@pytest.mark.parametrize("mangle, msg", [
    (lambda d: replace_metadata_entry(d, b"\x10\x00\x00\x00garbage, not a flatbuffer"), "M001"),
    (lambda d: replace_metadata_entry(d, b""), "0 bytes"),
    (lambda d: d[: d.rfind(b"PK\x03\x04")], "labels.txt is not in the model's zip archive"),
])
def test_malformed_metadata_is_one_line(tiny_tflite, mangle, msg):
    good = write_standard_metadata(tiny_tflite, **COMMON)
    bad = mangle(good)
    with pytest.raises(EdgeDeeplabError, match=msg) as e:
        read_standard_metadata(bad)
    assert_one_line_error(e, prefix="malformed TFLITE_METADATA")
    c = mediapipe_compatibility(bad)  # reported, not raised
    assert not c.accepted and c.problems[0].startswith("malformed TFLITE_METADATA")


def test_garbage_and_truncated_models(tiny_tflite):
    for data in (b"", b"garbage bytes, not a flatbuffer at all"):
        with pytest.raises(EdgeDeeplabError, match="not a TFLite model"):
            read_standard_metadata(data)
    with pytest.raises(EdgeDeeplabError):
        read_standard_metadata(tiny_tflite[: len(tiny_tflite) // 3])


def test_segmenter_options_round_trip():
    for act in ("none", "sigmoid", "softmax"):
        blob = build_segmenter_options(act)
        assert blob[4:8] == b"V001"
        assert parse_segmenter_options(blob) == (act, "1.0.0")
    with pytest.raises(ValueError):
        parse_segmenter_options(b"\x01")
