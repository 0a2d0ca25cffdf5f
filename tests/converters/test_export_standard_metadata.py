"""Every export carries standard TFLite metadata; --labels; analyze; consumers prefer it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.calibration import structured_images
from edge_deeplab.core.contract.tflite_metadata import (
    mediapipe_compatibility,
    read_standard_metadata,
    write_standard_metadata,
)
from edge_deeplab.core.errors import EdgeDeeplabError
from tests.support.cli import assert_one_line_error
from tests.support.data_trees import make_folder_tree
from tests.support.tiny import tiny_model, tiny_tflite

LABELS = ("background", "person", "sky")
#: On the tiny config (64x64, alpha 0.35, 3 classes): output stride 32 with ASPP rates 1, no
#: dilation anywhere (nothing here needs a forward pass).
CFG = dict(output_stride=32, aspp_rates=(1, 1, 1), labels=LABELS)

#: (variant, export kwargs, expected input dtype, MediaPipe accepts?)
CASES = {
    "float32": ("float32", {}, "float32", True),
    "float16": ("float16", {}, "float32", True),
    "dynamic": ("dynamic", {}, "float32", True),
    "int8": ("int8", {}, "uint8", True),
    "int8_io_int8": ("int8", {"io_type": "int8"}, "int8", False),
    "int8_io_float32": ("int8", {"io_type": "float32"}, "float32", True),
    "float32_classmap": ("float32", {"output": "classmap"}, "float32", False),
    "float32_raw": ("float32", {"normalize_in_graph": True}, "float32", True),
    "int8_raw": ("int8", {"normalize_in_graph": True}, "uint8", True),
    # an untrained QAT model's input fake-quant range is still [0, 0]: the uint8 input's scale is
    # ~4e-9, so the raw pixels MediaPipe feeds would be wrong; the check says so (trained: fine)
    "qat_int8": ("qat-int8", {}, "uint8", False),
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, pytestconfig):
    from edge_deeplab.model.model_io import save_model

    d = tmp_path_factory.mktemp("stdmeta")
    model, cfg = tiny_model(**CFG)
    keras_path = save_model(model, d / "m.keras", cfg)
    out = {"_dir": d, "_keras": keras_path, "_cfg": cfg, "_model": model}
    for name, (variant, kw, _, _) in CASES.items():
        out[name] = str(tiny_tflite(pytestconfig, variant, options=kw, **CFG))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_every_variant_carries_standard_metadata(exports, case):
    from edge_deeplab.core.contract.metadata import read_tflite_metadata

    _, kw, in_dtype, accepted = CASES[case]
    path = exports[case]
    m = read_standard_metadata(path)
    assert m is not None and m.labels == LABELS
    assert m.name.startswith("DeepLab v3+") and m.toolkit_version
    raw = kw.get("normalize_in_graph", False)
    assert m.normalization() == (((0.0,) * 3, (1.0,) * 3) if raw else ((127.5,) * 3, (127.5,) * 3))
    kind = kw.get("output", "logits")
    assert m.output_kind == kind
    assert m.activation == ("softmax" if kind == "logits" else "none")
    lo, hi = {"uint8": (0, 255), "int8": (-128, 127)}.get(
        in_dtype, (0, 255) if raw else (-1, 1))
    assert m.input_min == (lo,) * 3 and m.input_max == (hi,) * 3
    # the toolkit's own JSON round trip is intact: embedded entry, sidecar, associated file
    js = read_tflite_metadata(path)
    assert js["labels"] == list(LABELS) and js["output"] == kind
    assert json.loads(Path(path).with_suffix(".json").read_text())["labels"] == list(LABELS)
    assert m.extra_json["export"]["variant"] == js["export"]["variant"]
    c = mediapipe_compatibility(path)
    assert c.accepted is accepted, c.problems
    if in_dtype == "int8":
        assert any("int8" in p and "uint8 or float32" in p for p in c.problems)
    if case == "qat_int8":
        assert any("uint8 input gets raw pixels" in p for p in c.problems)


def test_runtime_reads_standard_metadata(exports):
    from edge_deeplab.runtime import open_runner

    with open_runner(exports["float32_raw"]) as r:
        assert r.metadata["labels"] == list(LABELS)
        assert r.metadata["tflite_metadata"]["activation"] == "softmax"
        mean, std = r.normalization()
        assert mean.tolist() == [0, 0, 0] and std.tolist() == [1, 1, 1]


def test_analyze_shows_standard_metadata_and_verdict(exports):
    from converters.analyze import analyze_tflite, format_report

    text = format_report(analyze_tflite(exports["float32"], gpu=False))
    assert "normalization mean=127.5 std=127.5" in text
    assert "labels (3): background, person, sky; activation softmax" in text
    assert "MediaPipe Tasks ImageSegmenter: accepts this model" in text
    text = format_report(analyze_tflite(exports["int8_io_int8"], gpu=False))
    assert "MediaPipe Tasks ImageSegmenter: refuses it: input tensor is int8" in text


def test_labels_option(exports, monkeypatch):
    import converters.export as ex

    d, cfg, model = exports["_dir"], exports["_cfg"], exports["_model"]

    def no_conversion(*a, **k):
        raise AssertionError("conversion started before the label check")

    monkeypatch.setattr(ex, "_trace_and_convert", no_conversion)
    with pytest.raises(EdgeDeeplabError, match="2 labels given for a model with 3 classes") as e:
        ex.export_tflite(model, d / "bad.tflite", "float32", config=cfg, labels=["a", "b"])
    assert_one_line_error(e)
    assert not (d / "bad.tflite").exists()
    monkeypatch.undo()
    p = ex.export_tflite(model, d / "named.tflite", "float32", config=cfg,
                         labels=["bg", "human", "sky"])["path"]
    assert read_standard_metadata(p).labels == ("bg", "human", "sky")
    from edge_deeplab.core.contract.metadata import read_tflite_metadata

    assert read_tflite_metadata(p)["labels"] == ["bg", "human", "sky"]


def test_cli_labels_count_is_one_line_before_tensorflow(exports, tmp_path):
    code = ("import sys\nfrom edge_deeplab.app.cli import main\nrc = main(sys.argv[1:])\n"
            "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "export", str(exports["_keras"]), "--out",
                           str(tmp_path / "x.tflite"), "--labels", "a,b"],
                          capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc, "--labels gives 2 names but the model has 3 classes", code=2)
    assert "TF_NOT_LOADED" in proc.stdout
    assert not (tmp_path / "x.tflite").exists()


def _mangle_standard_metadata(src: Path, dest: Path) -> Path:
    from edge_deeplab.core.contract.tflite_metadata.writer import replace_metadata_entry

    dest.write_bytes(replace_metadata_entry(src.read_bytes(), b"\x10\x00\x00\x00not metadata"))
    dest.with_suffix(".json").write_text(src.with_suffix(".json").read_text())
    return dest


def test_malformed_standard_metadata_one_line_in_analyze_and_runs_elsewhere(exports, tmp_path):
    from edge_deeplab.app.cli import main

    bad = _mangle_standard_metadata(Path(exports["float32"]), tmp_path / "bad.tflite")
    proc = subprocess.run([sys.executable, "-m", "edge_deeplab.app.cli", "analyze", "--no-gpu", str(bad)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "TFLITE_METADATA" in line]
    assert len(lines) == 2  # "standard metadata: malformed ..." and the MediaPipe verdict
    assert lines[0].strip().startswith("standard metadata: malformed TFLITE_METADATA")
    # bench and eval still run it (labels/normalization from the JSON metadata)
    from edge_deeplab.runtime import open_runner

    with open_runner(bad) as r:
        assert r.metadata["labels"] == list(LABELS) and "tflite_metadata" not in r.metadata
    out = tmp_path / "bench.json"
    assert main(["bench", str(bad), "--threads", "1", "--runs", "2", "--warmup", "1", "--rounds", "1",
                 "--e2e-runs", "0", "--no-agreement", "--json", str(out), "--quiet"]) == 0
    rep = json.loads(out.read_text())
    assert len(rep["results"]) == 1 and not rep.get("errors")
    root, _ = make_folder_tree(tmp_path / "data", np.random.default_rng(5), num_classes=3,
                               exts=(".png",), images=structured_images(2, (64, 64), seed=5),
                               n_train=0, labels=LABELS)  # both images in val
    assert main(["eval", str(bad), "--dataset", "folder", "--data-dir", str(root), "--split", "val",
                 "--json", str(tmp_path / "eval.json"), "--quiet"]) == 0


def test_third_party_model_needs_no_flags(exports, tmp_path):
    """A foreign model with standard metadata only (no JSON, no sidecar): labels, normalization
    and the person class come from it."""
    from demos.person import resolve_person_channel
    from edge_deeplab.core._tf import tf
    from edge_deeplab.runtime import open_runner
    from edge_deeplab.runtime.model_input import ModelInput

    @tf.function(input_signature=[tf.TensorSpec((1, 32, 32, 3), tf.float32)])
    def f(x):
        return tf.concat([x[..., :1], -x[..., :1]], -1)

    raw = bytes(tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()]).convert())
    p = tmp_path / "third_party.tflite"
    p.write_bytes(write_standard_metadata(
        raw, name="x", description="x", version="1", author="someone else", toolkit_version="n/a",
        labels=["sky", "person"], mean=[0.0], std=[255.0], output_kind="logits"))
    with open_runner(p) as r:
        mi = ModelInput.for_runner(r)  # what eval, bench and the demo feed it
        mean, std, source = mi.mean, mi.std, mi.normalization_source
        assert source == "metadata" and mean.tolist() == [0, 0, 0] and std.tolist() == [255] * 3
        sel = resolve_person_channel(r.output.shape, r.output.dtype, r.metadata)
        assert sel.index == 1 and "person" in sel.reason
