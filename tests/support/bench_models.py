"""Real model files for the benchmark tests (good, bad and hostile).

The good ones are the tiny DeepLab with 5 classes (the synthetic dataset's) exported to float32 and
int8 by :func:`tests.support.tiny.tiny_tflite`, cached by the code that makes them. The bad files
are real bytes: garbage, an empty file, a truncated real model, a real model whose first operator
was rewritten into an unknown custom op, and a real (1, 10)-input model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: The benchmark models' classes: those of the synthetic dataset their mIoU runs on.
NUM_CLASSES = 5


def vector_input_model(config) -> Path:
    """A real .tflite whose input is a (1, 10) vector (not an image), cached by this file's code."""
    from tests.support.trained import cache_dir

    path = cache_dir(config, "edge_deeplab_vector_input", ("tests/support/bench_models.py",)) / \
        "vector_input.tflite"
    if path.is_file() and path.stat().st_size > 0:
        return path
    from edge_deeplab.core._tf import keras
    from edge_deeplab.core.atomic_io import write_bytes_atomic
    from tests.support.tiny import convert_naive

    inp = keras.Input((10,), name="x")
    return write_bytes_atomic(path, convert_naive(keras.Model(inp, keras.layers.Dense(3)(inp))))


def tiny_models(config) -> dict:
    """``{"float32": path, "int8": path, "vector_input": path}`` (built once, then cached)."""
    from tests.support.tiny import tiny_tflite

    return {v: tiny_tflite(config, v, num_classes=NUM_CLASSES) for v in ("float32", "int8")} | \
        {"vector_input": vector_input_model(config)}


def with_unknown_custom_op(src: Path, dest: Path) -> Path:
    """Copies a real .tflite, turning its first operator code into the custom op ``EdgeDeeplabNoSuchOp``."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    buf = Path(src).read_bytes()
    model = s.ModelT.InitFromObj(s.Model.GetRootAsModel(buf, 0))
    oc = model.operatorCodes[0]
    oc.builtinCode = s.BuiltinOperator.CUSTOM
    oc.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    oc.customCode = "EdgeDeeplabNoSuchOp"
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    dest.write_bytes(bytes(b.Output()))
    return dest


def bad_models(good: Path, out_dir: Path, vector_input: Path) -> dict:
    """Writes the hostile files into ``out_dir`` and returns ``{kind: path}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = Path(good).read_bytes()
    paths = {
        "garbage": out_dir / "garbage.tflite",
        "empty": out_dir / "empty.tflite",
        "truncated": out_dir / "truncated.tflite",
        "missing": out_dir / "missing.tflite",
        "custom_op": out_dir / "custom_op.tflite",
        "vector_input": out_dir / "vector_input.tflite",
    }
    paths["garbage"].write_bytes(os.urandom(4096))
    paths["empty"].write_bytes(b"")
    paths["truncated"].write_bytes(data[: len(data) // 3])
    with_unknown_custom_op(good, paths["custom_op"])
    shutil.copy(vector_input, paths["vector_input"])
    return paths


def without_metadata(src: Path, dest: Path) -> Path:
    """Copies a real .tflite without its metadata table (and without the JSON sidecar): a 'foreign' model."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT.InitFromObj(s.Model.GetRootAsModel(Path(src).read_bytes(), 0))
    model.metadata = []
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    dest.write_bytes(bytes(b.Output()))
    return dest


def sidecar_only(src: Path, dest: Path) -> Path:
    """Copies a real export without its embedded metadata (standard and ours) but with its JSON
    sidecar: a model the runtime knows only from ``X.json`` (its documented fallback)."""
    import shutil

    from edge_deeplab.core.contract import sidecar_path

    without_metadata(src, dest)
    shutil.copyfile(sidecar_path(src), sidecar_path(dest))
    return dest


def two_output_model(dest: Path, size: int = 32) -> Path:
    """A real .tflite with two segmentation-shaped outputs (2 and 3 channels, same input): which one
    a tool uses must be said, not guessed."""
    from edge_deeplab.core._tf import keras, tf
    from edge_deeplab.core.atomic_io import write_bytes_atomic

    inp = keras.Input((size, size, 3), name="image")
    a = keras.layers.Conv2D(2, 1, name="seg_a")(inp)
    b = keras.layers.Conv2D(3, 1, name="seg_b")(inp)
    m = keras.Model(inp, [a, b])
    return write_bytes_atomic(dest, tf.lite.TFLiteConverter.from_keras_model(m).convert())


#: Conv layers (32 -> 32 channels, 3x3, at 64x64) of :func:`conv_stack_model`'s base model; the
#: "double" model has twice as many: 155 vs 306 million multiply-adds (stem and head included).
CONV_STACK_BASE_DEPTH = 4


def conv_stack_macs(depth: int) -> int:
    """Multiply-adds of :func:`conv_stack_model` (``depth``): stem 3->32, ``depth`` x 32->32 (3x3),
    head 32->5 (1x1), all at 64x64."""
    return 64 * 64 * (3 * 9 * 32 + depth * 32 * 9 * 32 + 32 * NUM_CLASSES)


def conv_stack_model(config, depth: int) -> Path:
    """A real float32 .tflite: a 3x3 conv stem, ``depth`` 3x3 convs of 32 channels and a 1x1 head to
    :data:`NUM_CLASSES` classes, all at 64x64 (so its compute grows linearly with ``depth``); fixed
    weights (seed 0), cached by this file's code."""
    from tests.support.trained import cache_dir

    path = cache_dir(config, "edge_deeplab_conv_stack", ("tests/support/bench_models.py",)) / \
        f"conv_stack_{depth}.tflite"
    if path.is_file() and path.stat().st_size > 0:
        return path
    from edge_deeplab.core._tf import keras, tf
    from edge_deeplab.core.atomic_io import write_bytes_atomic
    from tests.support.tiny import convert_naive

    tf.random.set_seed(0)
    inp = keras.Input((64, 64, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inp)
    for _ in range(depth):
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    out = keras.layers.Conv2D(NUM_CLASSES, 1, name="logits")(x)
    return write_bytes_atomic(path, convert_naive(keras.Model(inp, out)))
