"""``converters.analyze``: op histogram, I/O quantization, float islands, GPU coverage, bad files.

Uses tiny graphs converted from ``tf.function``s (a second each), so every case is real TFLite.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters.analyze import (
    GPU_SUPPORTED_OPS,
    GPU_UNSUPPORTED_OPS,
    Graph,
    analyze_tflite,
    format_report,
    static_gpu_rules,
)
from edge_deeplab.core.errors import EdgeDeeplabError
from tests.support.cli import assert_one_line_error


def _convert(fn, shape, quant=None, out=None, io="uint8"):
    from edge_deeplab.core._tf import tf

    f = tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.float32, name="x")])
    c = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
    rng = np.random.default_rng(0)
    if quant == "float16":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.target_spec.supported_types = [tf.float16]
    elif quant == "dynamic":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant in ("int8", "mixed"):
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([rng.uniform(-1, 1, shape).astype(np.float32)]
                                            for _ in range(4))
        if quant == "int8":
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            c.inference_input_type = getattr(tf, io)
            c.inference_output_type = getattr(tf, io)
    data = c.convert()
    out.write_bytes(data)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from edge_deeplab.core._tf import tf

    d = tmp_path_factory.mktemp("analyze")
    rng = np.random.default_rng(1)
    k1 = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 64)).astype(np.float32))
    k2 = tf.constant(rng.normal(0, 0.3, (3, 3, 64, 32)).astype(np.float32))

    def convnet(x):
        y = tf.nn.relu(tf.nn.conv2d(x, k1, 1, "SAME"))
        return tf.nn.conv2d(y, k2, 1, "SAME")

    def with_sin(x):  # SIN has no int8 kernel: the converter leaves a float island around it
        y = tf.math.sin(tf.nn.conv2d(x, k1, 1, "SAME"))
        return tf.nn.conv2d(y, k2, 1, "SAME")

    def s2b(x):
        y = tf.space_to_batch_nd(x, [2, 2], [[0, 0], [0, 0]])
        return tf.batch_to_space(tf.nn.relu(y), [2, 2], [[0, 0], [0, 0]])

    shape = (1, 16, 16, 3)
    return {
        "float32": _convert(convnet, shape, None, d / "f32.tflite"),
        "float16": _convert(convnet, shape, "float16", d / "f16.tflite"),
        "dynamic": _convert(convnet, shape, "dynamic", d / "dyn.tflite"),
        "int8": _convert(convnet, shape, "int8", d / "int8.tflite"),
        "int8_io": _convert(convnet, shape, "int8", d / "int8_io.tflite", io="int8"),
        "mixed": _convert(with_sin, shape, "mixed", d / "mixed.tflite"),
        "s2b": _convert(s2b, shape, None, d / "s2b.tflite"),
    }


def test_report_keys_io_and_histogram(models):
    r = analyze_tflite(models["float32"], gpu=False)
    for key in ("size_bytes", "inputs", "outputs", "ops", "gpu", "float_islands", "quantization"):
        assert key in r
    assert r["size_bytes"] == models["float32"].stat().st_size
    assert r["ops"] == {"CONV_2D": 2}  # ReLU fused into the first conv
    assert r["inputs"] == [{"name": "x", "shape": [1, 16, 16, 3], "dtype": "float32",
                            "scale": None, "zero_point": None}]
    assert r["outputs"][0]["shape"] == [1, 16, 16, 32]
    assert r["gpu"] is None and r["quantization"] == "float32" and r["float_islands"] == []
    json.dumps(r)  # JSON-serialisable as the CLI prints it


@pytest.mark.parametrize("name,kind", [("float32", "float32"), ("float16", "float16"),
                                       ("dynamic", "dynamic-range"), ("int8", "full-integer"),
                                       ("mixed", "mixed")])
def test_quantization_kind(models, name, kind):
    assert analyze_tflite(models[name], gpu=False)["quantization"] == kind


def test_int8_io_quantization_and_no_islands(models):
    r = analyze_tflite(models["int8"], gpu=False)
    i, o = r["inputs"][0], r["outputs"][0]
    assert i["dtype"] == "uint8" and o["dtype"] == "uint8"
    assert 0 < i["scale"] < 1 and 0 <= i["zero_point"] <= 255
    assert isinstance(o["scale"], float) and isinstance(o["zero_point"], int)
    assert r["ops"]["QUANTIZE"] == 2 and r["float_islands"] == []
    assert "float islands: none" in format_report(r)


def test_float_islands_are_listed(models):
    r = analyze_tflite(models["mixed"], gpu=False)
    islands = r["float_islands"]
    ops = [f["op"] for f in islands]
    assert "SIN" in ops
    assert "DEQUANTIZE" in ops and "QUANTIZE" in ops  # conversions inside the graph
    assert all(f["reason"] and isinstance(f["index"], int) for f in islands)
    # the QUANTIZE right after the float input and the DEQUANTIZE before the float output are fine
    assert len(islands) == 3
    text = format_report(r)
    assert "float islands: 3" in text and "SIN" in text


def test_static_rules(models):
    def rules(name):
        return static_gpu_rules(Graph(models[name].read_bytes(), name))

    assert rules("float32") == [] and rules("int8") == [] and rules("float16") == []
    assert rules("s2b") == ["BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND"]
    # SIN is a GPU op: the static rules flag nothing in the float-island model
    assert "SIN" in GPU_SUPPORTED_OPS and "SIN" not in GPU_UNSUPPORTED_OPS
    assert rules("mixed") == []
    assert not (GPU_SUPPORTED_OPS & GPU_UNSUPPORTED_OPS)


def test_static_rules_fallback_when_no_gpu_starts(models, monkeypatch):
    # Make Vulkan find no driver: the real accelerator cannot start, so analysis falls back.
    monkeypatch.setenv("VK_ICD_FILENAMES", "/nonexistent/icd.json")
    monkeypatch.setenv("VK_DRIVER_FILES", "/nonexistent/icd.json")
    r = analyze_tflite(models["s2b"], timeout=120)
    g = r["gpu"]
    assert g["method"] == "static-rules"
    assert g["fully_accelerated"] is False
    assert g["unsupported_ops"] == ["BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND"]
    assert g["error"]  # says why the real accelerator was not used
    assert "static rules" in format_report(r)


@pytest.mark.gpu
def test_real_gpu_coverage(models):
    good = analyze_tflite(models["int8"])
    assert good["gpu"]["method"] == "litert-gpu"
    assert good["gpu"]["fully_accelerated"] is True and good["gpu"]["unsupported_ops"] == []
    bad = analyze_tflite(models["s2b"])
    assert bad["gpu"]["method"] == "litert-gpu"
    assert bad["gpu"]["fully_accelerated"] is False
    assert set(bad["gpu"]["unsupported_ops"]) == {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"}
    assert "NOT fully accelerated" in format_report(bad)


def test_bad_files_raise_one_line(models, tmp_path):
    data = models["float32"].read_bytes()
    cases = {
        "empty.tflite": b"",
        "garbage.tflite": b"this is not a flatbuffer, just some text" * 10,
        "truncated.tflite": data[: len(data) // 2],
        "header_only.tflite": data[:16],
        "png.tflite": b"\x89PNG\r\n\x1a\n" + bytes(200),
    }
    for name, content in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(EdgeDeeplabError) as e:
            analyze_tflite(p, gpu=False)
        assert_one_line_error(e, name)
    with pytest.raises(EdgeDeeplabError, match="not found"):
        analyze_tflite(tmp_path / "missing.tflite")
    with pytest.raises(EdgeDeeplabError, match="not a file"):
        analyze_tflite(tmp_path)


def test_cli(models, tmp_path, capsys):
    from edge_deeplab.app.cli import main

    assert main(["analyze", str(models["int8"]), "--json", "--no-gpu"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["ops"]["CONV_2D"] == 2 and r["gpu"] is None
    assert main(["analyze", str(models["mixed"]), "--no-gpu"]) == 0
    out = capsys.readouterr().out
    assert "CONV_2D" in out and "float islands: 3" in out
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"nope")
    rc = main(["analyze", str(bad)])
    assert_one_line_error(capsys.readouterr().err, rc=rc, code=2, prefix="edge-deeplab analyze: error:")


def test_uint8_io_edge_conversions_are_named_as_outside_xnnpack(models):
    """uint8 I/O costs two reference-kernel QUANTIZE ops; int8 I/O runs whole in XNNPACK. The rule
    agrees with LiteRT's own CPU verdict."""
    from edge_deeplab.runtime import open_runner

    u8 = analyze_tflite(models["int8"], gpu=False)
    ref = u8["cpu"]["xnnpack_reference_ops"]
    assert [o["op"] for o in ref] == ["QUANTIZE", "QUANTIZE"]
    assert ref[0]["reason"].startswith("uint8 -> int8") and ref[1]["reason"].startswith("int8 -> uint8")
    assert u8["cpu"]["fully_delegated"] is False and u8["cpu"]["fallback_ops"] == {"QUANTIZE": 2}
    text = format_report(u8)
    assert "ops on TFLite's reference kernels, outside XNNPACK: QUANTIZEx2" in text
    assert "uint8 I/O: #0 QUANTIZE uint8 -> int8" in text and "--io-type int8" in text
    i8 = analyze_tflite(models["int8_io"], gpu=False)
    assert i8["cpu"]["xnnpack_reference_ops"] == [] and i8["cpu"]["fully_delegated"] is True
    assert "CPU (XNNPACK): whole graph" in format_report(i8)
    for path, whole in ((models["int8"], False), (models["int8_io"], True)):
        r = open_runner(str(path), accelerator="cpu", runtime="litert")
        try:
            assert r.fully_accelerated is whole, (path, r.fully_accelerated)
        finally:
            r.close()
