"""The contract's own .tflite reader against LiteRT's generated schema, on real exports.

:mod:`edge_deeplab.core.contract.tflite_reader` reads the flatbuffer without TensorFlow or LiteRT
(boards have only ``tflite_runtime``). Here it must return exactly what
``ai_edge_litert.schema_py_generated`` reads from the same bytes, for every export variant of the
trained model (float, float16 weights, dynamic range, int8 with per-channel scales, int16
activations): tensors, quantization, buffers, metadata entries, operator codes and operators. And
no prefix or corruption of a model may raise anything but its one error type.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge_deeplab.core.contract.metadata import (
    METADATA_NAME,
    metadata_entry_bytes,
    parse_model,
)
from edge_deeplab.core.contract.semantics import VARIANTS
from edge_deeplab.core.contract.tflite_metadata import METADATA_BUFFER_NAME
from edge_deeplab.core.contract.tflite_reader import (
    TENSOR_TYPE_NAMES,
    FlatbufferError,
    read_model,
)
from edge_deeplab.core.errors import EdgeDeeplabError


def _text(v):
    return None if v is None else v.decode("utf-8", "replace")


def _ints(length, as_numpy):
    return tuple(int(x) for x in as_numpy()) if length else ()


def schema_facts(data: bytes) -> dict:
    """The same facts, read with LiteRT's generated object-less API."""
    from ai_edge_litert import schema_py_generated as s

    m = s.Model.GetRootAs(data, 0)

    def buffer_bytes(i):
        b = m.Buffers(i)
        if b.Offset() > 1:
            return data[b.Offset(): b.Offset() + b.Size()]
        return b.DataAsNumpy().tobytes() if b.DataLength() else b""

    def quant(q):
        if q is None:
            return None
        return (tuple(float(x) for x in q.ScaleAsNumpy()) if q.ScaleLength() else (),
                tuple(int(x) for x in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else (),
                int(q.QuantizedDimension()))

    subgraphs = []
    for g in range(m.SubgraphsLength()):
        sg = m.Subgraphs(g)
        tensors = []
        for i in range(sg.TensorsLength()):
            t = sg.Tensors(i)
            tensors.append((_text(t.Name()) or "", _ints(t.ShapeLength(), t.ShapeAsNumpy),
                            int(t.Type()), int(t.Buffer()), bool(t.IsVariable()),
                            quant(t.Quantization())))
        ops = [(int(op.OpcodeIndex()), _ints(op.InputsLength(), op.InputsAsNumpy),
                _ints(op.OutputsLength(), op.OutputsAsNumpy))
               for op in (sg.Operators(i) for i in range(sg.OperatorsLength()))]
        subgraphs.append((tensors, _ints(sg.InputsLength(), sg.InputsAsNumpy),
                          _ints(sg.OutputsLength(), sg.OutputsAsNumpy), ops))
    return {
        "version": int(m.Version()),
        "opcodes": [(int(oc.DeprecatedBuiltinCode()), int(oc.BuiltinCode()), _text(oc.CustomCode()))
                    for oc in (m.OperatorCodes(i) for i in range(m.OperatorCodesLength()))],
        "buffers": [(int(m.Buffers(i).DataLength()), int(m.Buffers(i).Offset()),
                     int(m.Buffers(i).Size()), buffer_bytes(i)) for i in range(m.BuffersLength())],
        "metadata": [(_text(m.Metadata(i).Name()), int(m.Metadata(i).Buffer()))
                     for i in range(m.MetadataLength())],
        "subgraphs": subgraphs,
    }


def reader_facts(data: bytes) -> dict:
    m = read_model(data)

    def quant(q):
        return None if q is None else (q.scale, q.zero_point, q.quantized_dimension)

    return {
        "version": m.version,
        "opcodes": [(oc.deprecated_builtin_code, oc.builtin_code, oc.custom_code)
                    for oc in m.operator_codes],
        "buffers": [(b.data_length, b.offset, b.size, m.buffer_bytes(i))
                    for i, b in enumerate(m.buffers)],
        "metadata": [(md.name, md.buffer) for md in m.metadata],
        "subgraphs": [([(t.name, t.shape, t.type, t.buffer, t.is_variable, quant(t.quantization))
                        for t in sg.tensors], sg.inputs, sg.outputs,
                       [(op.opcode_index, op.inputs, op.outputs) for op in sg.operators])
                      for sg in m.subgraphs],
    }


@pytest.fixture(scope="module")
def exports(trained):
    return {v: Path(trained["exports"][v]).read_bytes() for v in VARIANTS}


@pytest.mark.parametrize("variant", VARIANTS)
def test_reader_matches_litert_schema(exports, variant):
    data = exports[variant]
    ours, theirs = reader_facts(data), schema_facts(data)
    for key in theirs:  # one key at a time, so a failure names the table
        assert ours[key] == theirs[key], key
    model = read_model(data)
    sg = model.subgraphs[0]
    # what the export really holds, so the comparison above compared something
    assert len(sg.tensors) > 20 and len(sg.operators) > 10 and len(model.operator_codes) > 3
    assert {md.name for md in model.metadata} >= {METADATA_NAME, METADATA_BUFFER_NAME}
    assert b'"labels"' in metadata_entry_bytes(model, METADATA_NAME)
    assert metadata_entry_bytes(model, METADATA_BUFFER_NAME)[4:8] == b"M001"
    dtypes = {t.dtype for t in sg.tensors}
    assert not any(d.startswith("type") for d in dtypes), dtypes
    if variant in ("int8", "qat-int8", "w8a16"):
        per_channel = [t for t in sg.tensors if t.quantization and len(t.quantization.scale) > 1]
        assert per_channel, "int8 weights carry per-channel scales"
        assert any(t.quantization.quantized_dimension != 0 for t in per_channel) or \
            all(len(t.quantization.zero_point) == len(t.quantization.scale) for t in per_channel)
    expect = {"float16": "float16", "w8a16": "int16", "int8": "int8", "qat-int8": "int8",
              "dynamic": "int8"}.get(variant)
    if expect:
        assert expect in dtypes, dtypes


def test_type_names_are_the_schema_enum():
    from ai_edge_litert import schema_py_generated as s

    enum = {v: k.lower() for k, v in vars(s.TensorType).items()
            if not k.startswith("_") and isinstance(v, int)}
    assert all(enum[k] == name for k, name in TENSOR_TYPE_NAMES.items())


def test_every_prefix_and_corruption_fails_with_one_error(exports):
    """Truncations raise FlatbufferError; flipped bytes raise it or read like LiteRT's schema."""
    data = exports["int8"]
    # the flatbuffer ends where the standard metadata's zip archive (labels.txt ...) begins
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        end = min(i.header_offset for i in zf.infolist())
    rng = np.random.default_rng(0)
    cuts = sorted(set(rng.integers(0, end, 150).tolist()) | set(range(0, 64)) | {end - 1})
    for n in cuts:
        with pytest.raises(FlatbufferError):
            read_model(data[:n])
    read_model(data[:end])  # the archive is not part of the flatbuffer
    # Flipped bytes in the tables: the reader either refuses the bytes with its one error, or
    # reads exactly what LiteRT's generated schema reads from those same bytes (where the schema
    # reads them at all: it does not bounds-check, so garbage offsets may raise in it).
    refused = compared = 0
    head = min(len(data), 4096)  # the tables and vtables are at the front; weights follow
    for _ in range(300):
        bad = bytearray(data)
        for pos in rng.integers(8, head, 4):
            bad[pos] = int(rng.integers(0, 256))
        bad = bytes(bad)
        try:
            got = reader_facts(bad)
        except FlatbufferError:
            refused += 1
            continue
        try:
            want = schema_facts(bad)
        except Exception:  # noqa: BLE001 - the reference cannot read it; nothing to compare
            continue
        assert got == want
        compared += 1
    print(f"300 corruptions: {refused} refused, {compared} read like the schema")
    assert refused > 0 and compared > 0


def test_parse_model_errors_are_one_line(exports):
    data = exports["float32"]
    for bad, msg in ((b"", "not a TFLite model"), (b"garbage bytes, not a flatbuffer at all",
                                                   "not a TFLite model"),
                     (data[: len(data) // 2], "corrupt or truncated TFLite model"),
                     (data[:16], "corrupt or truncated TFLite model")):
        with pytest.raises(EdgeDeeplabError, match=msg) as e:
            parse_model(bad, "x.tflite")
        assert "\n" not in str(e.value) and "x.tflite" in str(e.value)
