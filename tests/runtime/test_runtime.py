"""The shared runtime layer against the real LiteRT runtime (and GPU accelerator where it starts)."""

import subprocess
import sys

import numpy as np
import pytest

from edge_deeplab.core.errors import DelegateUnavailableError, EdgeDeeplabError
from edge_deeplab.runtime import (
    TensorInfo,
    dequantize,
    native_error_line,
    open_runner,
    parse_delegate_log,
    probe_accelerator,
    quantize,
)
from tests.support.cli import assert_one_line_error


@pytest.fixture(scope="module")
def tiny_models(pytestconfig):
    """The tiny DeepLab converted twice: edge-clean (the exporter) and naive (SpaceToBatchND)."""
    from tests.support.tiny import tiny_model, tiny_tflite

    m, _ = tiny_model()
    x = np.random.RandomState(0).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    return tiny_tflite(pytestconfig), tiny_tflite(pytestconfig, kind="naive"), m, x


def test_cpu_runner_matches_keras(tiny_models):
    clean, _, model, x = tiny_models
    r = open_runner(clean, "cpu", threads=2)
    assert r.input.shape == (1, 64, 64, 3) and r.output.shape == (1, 64, 64, 3)
    assert r.fully_accelerated is True and r.runtime_name == "litert-compiled-model"
    y = r.run(x)
    ref = model(x, training=False).numpy()
    assert np.abs(y - ref).max() <= 1e-4 * max(1e-6, float(ref.max() - ref.min())) + 1e-6


def test_interpreter_runtime_agrees_with_compiled_model(tiny_models):
    clean, _, _, x = tiny_models
    a = open_runner(clean, "cpu", runtime="litert").run(x)
    b = open_runner(clean, "cpu", runtime="interpreter").run(x)
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.gpu
def test_gpu_reports_full_and_partial_delegation(tiny_models, trained):
    clean, naive, _, x = tiny_models
    r = open_runner(clean, "gpu")
    assert r.fully_accelerated is True and r.unsupported_ops == []
    # Values, on the trained model (the untrained one's ~1e-6 logits are below fp16 resolution):
    # the GPU computes the same function in fp16, within 1% of the logit range (measured 0.55%).
    f32 = trained["exports"]["float32"]
    with open_runner(f32, "gpu") as g, open_runner(f32, "cpu") as c:
        y_gpu, y_cpu = g.run(x), c.run(x)
    span = float(y_cpu.max() - y_cpu.min())
    assert span > 1.0 and np.abs(y_gpu - y_cpu).max() <= 1e-2 * span
    n = open_runner(naive, "gpu")
    assert n.fully_accelerated is False
    assert {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"} <= set(n.unsupported_ops)
    with pytest.raises(DelegateUnavailableError, match="SPACE_TO_BATCH_ND"):
        open_runner(naive, "gpu", allow_fallback=False)


@pytest.mark.gpu
def test_probe_runs_isolated(tiny_models):
    clean, naive, _, _ = tiny_models
    p = probe_accelerator(naive, "gpu")
    assert p["available"] is True and p["error"] is None
    assert p["fully_accelerated"] is False and "SPACE_TO_BATCH_ND" in p["unsupported_ops"]
    assert p["cpu_ops"] > 0
    assert probe_accelerator(clean, "gpu", run=True)["fully_accelerated"] is True


def test_bad_models_raise_one_line_errors(tmp_path):
    garbage = tmp_path / "g.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 20)
    empty = tmp_path / "e.tflite"
    empty.write_bytes(b"")
    for path, match in ((garbage, "not a valid TFLite model"), (empty, "empty"),
                        (tmp_path / "missing.tflite", "not found")):
        with pytest.raises(EdgeDeeplabError, match=match) as ei:
            open_runner(path)
        assert_one_line_error(ei)
    with pytest.raises(EdgeDeeplabError, match="unknown accelerator"):
        open_runner(garbage, "tpu")


def test_npu_without_vendor_library_is_unavailable(tiny_models):
    with pytest.raises(DelegateUnavailableError, match="NPU"):
        open_runner(tiny_models[0], "npu")


def test_gpu_without_driver_says_so(tiny_models):
    code = ("from edge_deeplab.runtime import open_runner\n"
            "from edge_deeplab.core.errors import DelegateUnavailableError\n"
            f"try:\n    open_runner({str(tiny_models[0])!r}, 'gpu')\n"
            "except DelegateUnavailableError as e:\n    print('UNAVAILABLE', e)\n")
    env = {**__import__("os").environ, "VK_ICD_FILENAMES": "/nonexistent.json",
           "VK_DRIVER_FILES": "/nonexistent.json"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300).stdout
    assert "UNAVAILABLE" in out and "GPU" in out


def test_quantize_roundtrip():
    info = TensorInfo("x", (1, 4), np.dtype(np.uint8), scale=2 / 255, zero_point=128)
    x = np.array([-1.0, 0.0, 0.5, 1.0], np.float32)
    q = quantize(x, info)
    assert q.dtype == np.uint8
    assert np.abs(dequantize(q, info) - x).max() <= info.scale / 2 + 1e-6


def test_native_error_line_prefers_the_failing_op():
    log = ("INFO: [environment.cc:36] Creating LiteRT environment\n"
           "ERROR: Encountered unresolved custom op: MyOp.\n"
           "ERROR: Node number 3 (MyOp) failed to prepare.\n")
    assert native_error_line(log, RuntimeError("boom")) == "Encountered unresolved custom op: MyOp."
    assert "no GPU adapter" in native_error_line("... No adapters found ...", RuntimeError("x"))
    assert native_error_line("INFO: noise\n", RuntimeError("plain reason")) == "plain reason"


def test_parse_delegate_log():
    text = ("ERROR: Following operations are not supported by GPU delegate:\n"
            "BATCH_TO_SPACE_ND: Operation is not supported.\n"
            "SPACE_TO_BATCH_ND: Operation is not supported.\n"
            "52 operations will run on the GPU, and the remaining 48 operations will run on the CPU.\n")
    p = parse_delegate_log(text)
    assert set(p["unsupported_ops"]) == {"BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND"}
    assert (p["gpu_ops"], p["cpu_ops"]) == (52, 48)


def test_model_input_normalizes_and_quantizes_as_written_out_by_hand():
    """The one image-to-input path against a literal reference: (x - mean) / std, then
    round(v / scale + zero_point) clipped to int8; the letterbox padding is the zero point."""
    from edge_deeplab.runtime.model_input import ModelInput
    from edge_deeplab.runtime.tensors import TensorInfo

    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    scale, zp = 0.0173, -3
    info = TensorInfo("x", (1, 6, 10, 3), np.dtype(np.int8), scale=scale, zero_point=zp)
    mi = ModelInput(info, mean, std)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    x, box = mi(image)
    want = np.empty((6, 10, 3), np.int64)
    for i in range(6):
        for j in range(10):
            for c in range(3):
                v = (float(image[i, j, c]) - mean[c]) / std[c]
                want[i, j, c] = min(127, max(-128, round(v / scale + zp)))
    assert x.dtype == np.int8 and x.shape == (1, 6, 10, 3) and box == (0, 0, 6, 10)
    assert np.array_equal(x[0].astype(np.int64), want)
    # A 3x10 image fills the middle rows; the rest is the normalized mean: the zero point.
    x, box = mi(image[:3])
    assert box == (1, 0, 3, 10)
    assert (x[0, 0] == zp).all() and (x[0, 4:] == zp).all()
    assert np.array_equal(x[0, 1:4].astype(np.int64), want[:3])
    # A uint8 input whose quantization absorbs the normalization gets the raw pixels (as phones
    # feed it); its padding is the zero point too.
    u8 = TensorInfo("x", (1, 6, 10, 3), np.dtype(np.uint8), scale=1 / 127.5, zero_point=128)
    x, _ = ModelInput(u8, 127.5, 127.5)(image[:3])
    assert np.array_equal(x[0, 1:4], image[:3]) and (x[0, 0] == 128).all()


def test_model_input_says_where_its_normalization_came_from(tiny_models, selfie_teacher):
    """The model's metadata wins over --mean/--std; a model without it (MediaPipe's selfie
    segmenter) takes the flags, else MobileNet's default; the demo reports which."""
    from edge_deeplab.runtime.model_input import ModelInput

    described = ModelInput.for_runner(open_runner(tiny_models[0]), mean=0, std=255)
    assert described.normalization_source == "metadata"
    assert not np.allclose(described.std, 255.0)
    bare = open_runner(selfie_teacher)
    default = ModelInput.for_runner(bare)
    assert default.normalization_source == "default"
    assert np.allclose(default.mean, 127.5) and np.allclose(default.std, 127.5)
    flags = ModelInput.for_runner(bare, mean=0, std=255)
    assert flags.normalization_source == "flags"
    assert np.allclose(flags.mean, 0.0) and np.allclose(flags.std, 255.0)


def test_model_input_float_int8_uint8_raw_and_grey():
    from edge_deeplab.runtime.model_input import ModelInput

    img = np.full((4, 4, 3), 255, np.uint8)
    mean, std = np.full(3, 127.5, np.float32), np.full(3, 127.5, np.float32)
    f = ModelInput(TensorInfo("x", (1, 4, 4, 3), np.dtype(np.float32)), mean, std)(img)[0]
    assert f.dtype == np.float32 and f.shape == (1, 4, 4, 3) and np.allclose(f, 1.0)
    q = ModelInput(TensorInfo("x", (1, 4, 4, 3), np.dtype(np.int8), 1 / 127.5, -1), mean, std)(img)[0]
    assert q.dtype == np.int8 and int(q.max()) == 126  # round(1 * 127.5 - 1)
    u = ModelInput(TensorInfo("x", (1, 4, 4, 3), np.dtype(np.uint8), 1 / 127.5, 128), mean, std)(img)[0]
    assert u.dtype == np.uint8 and int(u.max()) == 255
    raw = ModelInput(TensorInfo("x", (1, 4, 4, 3), np.dtype(np.uint8)), mean, std)(img)[0]  # raw pixels
    assert int(raw.max()) == 255
    gray = ModelInput(TensorInfo("x", (1, 4, 4, 1), np.dtype(np.float32)), mean, std)(img)[0]
    assert gray.shape == (1, 4, 4, 1)
