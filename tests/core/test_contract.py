"""The model contract: labels, normalization, output kind, variant and person class."""

import numpy as np

from edge_deeplab.core import contract


def test_normalization_metadata_flags_default():
    m, s = contract.normalization(None)
    assert m.tolist() == list(contract.NORM_MEAN) and s.tolist() == list(contract.NORM_STD)
    m, s = contract.normalization({"normalize_in_graph": True}, mean=3.0)
    assert m.tolist() == [0.0] * 3 and s.tolist() == [1.0] * 3
    m, s = contract.normalization({"normalization": {"mean": [1, 2, 3], "std": [4, 5, 6]}})
    assert m.tolist() == [1, 2, 3] and s.tolist() == [4, 5, 6]
    m, s = contract.normalization({}, mean=0.0, std=255.0)
    assert m.tolist() == [0.0] * 3 and s.tolist() == [255.0] * 3
    assert m.dtype == np.float32
    assert not contract.has_normalization({}) and contract.has_normalization({"normalize_in_graph": 1})


def test_output_kind_labels_person_class():
    assert contract.output_kind({"output": "logits"}) == "logits"
    assert contract.output_kind({"output": {"kind": "classmap"}}) == "classmap"
    assert contract.output_kind({"output_kind": "softmax"}) == "probabilities"
    assert contract.output_kind({"output": "weird"}) is None and contract.output_kind(None) is None
    assert contract.labels({"config": {"labels": ["a", "b"]}}) == ["a", "b"]
    assert contract.person_class(["bg", "Human"], 2)[0] == 1
    assert contract.person_class(None, 21)[0] == contract.VOC_PERSON
    assert contract.person_class(None, 2)[0] == 1
    assert contract.person_class(["a", "b", "c"], 3) is None


def test_variant_from_metadata(tmp_path):
    assert contract.variant(None, {"variant": "int8"}) == "int8"
    assert contract.variant(None, {"quantization": "qat-int8"}) == "qat-int8"
    assert contract.variant(tmp_path / "missing.tflite") == "unknown"
    assert contract.sidecar_path("a/m.tflite").name == "m.json"


def test_variant_from_exporter_metadata_is_the_vocabulary():
    """Our exporter writes ``export.variant``; it wins over the tensor-type guess (a dynamic export
    was reported as ``dynamic-range`` by the benchmarks, outside :data:`VARIANTS`)."""
    for v in contract.VARIANTS:
        assert contract.variant(None, {"export": {"variant": v}}) == v
    assert contract.variant(None, {"export": {"variant": "bogus"}}) == "unknown"
