"""A small read-only reader of ``.tflite`` flatbuffers: no TensorFlow, no LiteRT.

The model contract reads a few facts of a model (tensors and their quantization, operator codes,
buffers, metadata entries) wherever a model is consumed, including on boards that have only the
classic ``tflite_runtime`` wheel. This module reads them over the ``flatbuffers`` runtime's
:class:`~flatbuffers.table.Table`, following the public TFLite schema (``schema.fbs``): field ``i``
of a table sits at vtable slot ``4 + 2 * i``, and the schema only ever appends fields, so the
indices below hold for every model version. Only what the contract's readers use is covered.

:func:`read_model` parses everything up front into plain frozen dataclasses, checking every offset
and length against the buffer, so a truncated or garbage file fails there (:class:`FlatbufferError`)
and never later while a consumer walks the graph. :func:`edge_deeplab.core.contract.metadata.parse_model`
turns that into the one-line :class:`~edge_deeplab.core.errors.EdgeDeeplabError` users see.

Example:
    >>> from edge_deeplab.core.contract.tflite_reader import read_model
    >>> m = read_model(open("model.tflite", "rb").read())        # doctest: +SKIP
    >>> t = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]]      # doctest: +SKIP
    >>> t.name, t.shape, t.dtype, t.quantization.scale           # doctest: +SKIP
    ('image', (1, 64, 64, 3), 'uint8', (0.0078125,))
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Optional, Tuple

from flatbuffers import number_types as N
from flatbuffers.table import Table

FILE_IDENTIFIER = b"TFL3"

#: ``TensorType`` enum value -> numpy-style name (schema.fbs ``enum TensorType``).
TENSOR_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
                     6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64",
                     11: "complex128", 12: "uint64", 13: "resource", 14: "variant", 15: "uint32",
                     16: "uint16", 17: "int4", 18: "bfloat16"}


class FlatbufferError(ValueError):
    """The bytes are not a well-formed TFLite flatbuffer (wrong identifier, truncated, garbage)."""


@dataclasses.dataclass(frozen=True)
class QuantizationParameters:
    scale: Tuple[float, ...] = ()
    zero_point: Tuple[int, ...] = ()
    quantized_dimension: int = 0


@dataclasses.dataclass(frozen=True)
class Tensor:
    name: str
    shape: Tuple[int, ...]
    type: int  # TensorType enum value; ``dtype`` names it
    buffer: int
    quantization: Optional[QuantizationParameters]
    is_variable: bool = False

    @property
    def dtype(self) -> str:
        return TENSOR_TYPE_NAMES.get(self.type, f"type{self.type}")


@dataclasses.dataclass(frozen=True)
class Operator:
    opcode_index: int
    inputs: Tuple[int, ...]   # tensor indices; -1 marks an omitted optional input
    outputs: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class OperatorCode:
    deprecated_builtin_code: int
    builtin_code: int
    custom_code: Optional[str]

    @property
    def code(self) -> int:
        """The ``BuiltinOperator`` value: the larger of the two fields (schema 3a's rule)."""
        return max(self.builtin_code, self.deprecated_builtin_code)


@dataclasses.dataclass(frozen=True)
class SubGraph:
    tensors: Tuple[Tensor, ...]
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    operators: Tuple[Operator, ...]


@dataclasses.dataclass(frozen=True)
class Buffer:
    """A buffer: ``data_length`` bytes inside the flatbuffer at ``data_start``, or (models over
    2 GB) ``size`` bytes at ``offset`` in the file, after the flatbuffer (``offset > 1``)."""

    data_start: int
    data_length: int
    offset: int = 0
    size: int = 0

    @property
    def has_data(self) -> bool:
        return self.data_length > 0 or self.size > 0


@dataclasses.dataclass(frozen=True)
class Metadata:
    name: str
    buffer: int


@dataclasses.dataclass(frozen=True)
class Model:
    version: int
    operator_codes: Tuple[OperatorCode, ...]
    subgraphs: Tuple[SubGraph, ...]
    buffers: Tuple[Buffer, ...]
    metadata: Tuple[Metadata, ...]
    data: bytes = dataclasses.field(repr=False)

    def buffer_bytes(self, index: int) -> bytes:
        """The bytes of buffer ``index`` (inside the flatbuffer or after it)."""
        if not 0 <= index < len(self.buffers):
            raise FlatbufferError(f"buffer index {index} out of range ({len(self.buffers)} buffers)")
        b = self.buffers[index]
        if b.offset > 1:
            if b.offset + b.size > len(self.data):
                raise FlatbufferError(f"buffer {index} ({b.size} bytes at {b.offset}) lies past "
                                      f"the end of the {len(self.data)}-byte file")
            return bytes(self.data[b.offset: b.offset + b.size])
        return bytes(self.data[b.data_start: b.data_start + b.data_length])


class _Reader:
    """Bounds-checked access to the tables of one flatbuffer."""

    def __init__(self, data: bytes):
        self.buf = data
        self.size = len(data)

    def need(self, pos: int, nbytes: int, what: str) -> None:
        if pos < 0 or nbytes < 0 or pos + nbytes > self.size:
            raise FlatbufferError(f"{what} ({nbytes} bytes at {pos}) lies outside the "
                                  f"{self.size}-byte buffer")

    def u32(self, pos: int, what: str) -> int:
        self.need(pos, 4, what)
        return struct.unpack_from("<I", self.buf, pos)[0]

    def table(self, pos: int, what: str) -> Table:
        self.need(pos, 4, what)
        vtable = pos - struct.unpack_from("<i", self.buf, pos)[0]
        self.need(vtable, 4, f"{what} vtable")
        vt_len, obj_len = struct.unpack_from("<HH", self.buf, vtable)
        if vt_len < 4 or vt_len % 2:
            raise FlatbufferError(f"{what} has a malformed vtable (length {vt_len})")
        self.need(vtable, vt_len, f"{what} vtable")
        self.need(pos, obj_len, what)
        return Table(self.buf, pos)

    @staticmethod
    def slot(t: Table, field: int) -> int:
        """The field's offset within its table (0: absent, the default applies)."""
        return t.Offset(4 + 2 * field)

    def scalar(self, t: Table, field: int, flags, default):
        o = self.slot(t, field)
        if not o:
            return default
        self.need(t.Pos + o, flags.bytewidth, "scalar field")
        return t.Get(flags, t.Pos + o)

    def vector(self, t: Table, field: int, elem_size: int, what: str) -> Tuple[int, int]:
        """``(start, length)`` of a vector field; ``(0, 0)`` when absent."""
        o = self.slot(t, field)
        if not o:
            return 0, 0
        ref = t.Pos + o
        start = ref + self.u32(ref, what)
        n = self.u32(start, f"{what} length")
        self.need(start + 4, n * elem_size, what)
        return start + 4, n

    def numbers(self, t: Table, field: int, fmt: str, what: str) -> tuple:
        start, n = self.vector(t, field, struct.calcsize(fmt), what)
        return struct.unpack_from(f"<{n}{fmt}", self.buf, start) if n else ()

    def tables(self, t: Table, field: int, what: str) -> list:
        start, n = self.vector(t, field, 4, what)
        return [self.table(start + 4 * j + self.u32(start + 4 * j, what), f"{what}[{j}]")
                for j in range(n)]

    def sub_table(self, t: Table, field: int, what: str) -> Optional[Table]:
        o = self.slot(t, field)
        if not o:
            return None
        ref = t.Pos + o
        return self.table(ref + self.u32(ref, what), what)

    def string(self, t: Table, field: int, what: str) -> Optional[str]:
        o = self.slot(t, field)
        if not o:
            return None
        ref = t.Pos + o
        start = ref + self.u32(ref, what)
        n = self.u32(start, f"{what} length")
        self.need(start + 4, n, what)
        return bytes(self.buf[start + 4: start + 4 + n]).decode("utf-8", "replace")


# Field indices (schema.fbs; slot = 4 + 2 * index) of the tables read here.
_MODEL_VERSION, _MODEL_OPCODES, _MODEL_SUBGRAPHS, _MODEL_BUFFERS, _MODEL_METADATA = 0, 1, 2, 4, 6
_SG_TENSORS, _SG_INPUTS, _SG_OUTPUTS, _SG_OPERATORS = 0, 1, 2, 3
_T_SHAPE, _T_TYPE, _T_BUFFER, _T_NAME, _T_QUANT, _T_VARIABLE = 0, 1, 2, 3, 4, 5
_Q_SCALE, _Q_ZERO_POINT, _Q_DIMENSION = 2, 3, 6
_BUF_DATA, _BUF_OFFSET, _BUF_SIZE = 0, 1, 2
_MD_NAME, _MD_BUFFER = 0, 1
_OC_DEPRECATED, _OC_CUSTOM, _OC_BUILTIN = 0, 1, 3
_OP_OPCODE, _OP_INPUTS, _OP_OUTPUTS = 0, 1, 2


def _quantization(r: _Reader, t: Optional[Table]) -> Optional[QuantizationParameters]:
    if t is None:
        return None
    return QuantizationParameters(
        scale=r.numbers(t, _Q_SCALE, "f", "quantization scale"),
        zero_point=r.numbers(t, _Q_ZERO_POINT, "q", "quantization zero point"),
        quantized_dimension=r.scalar(t, _Q_DIMENSION, N.Int32Flags, 0))


def _tensor(r: _Reader, t: Table) -> Tensor:
    return Tensor(name=r.string(t, _T_NAME, "tensor name") or "",
                  shape=r.numbers(t, _T_SHAPE, "i", "tensor shape"),
                  type=r.scalar(t, _T_TYPE, N.Int8Flags, 0),
                  buffer=r.scalar(t, _T_BUFFER, N.Uint32Flags, 0),
                  quantization=_quantization(r, r.sub_table(t, _T_QUANT, "tensor quantization")),
                  is_variable=bool(r.scalar(t, _T_VARIABLE, N.BoolFlags, False)))


def _subgraph(r: _Reader, t: Table) -> SubGraph:
    tensors = tuple(_tensor(r, x) for x in r.tables(t, _SG_TENSORS, "tensors"))
    operators = tuple(Operator(opcode_index=r.scalar(x, _OP_OPCODE, N.Uint32Flags, 0),
                               inputs=r.numbers(x, _OP_INPUTS, "i", "operator inputs"),
                               outputs=r.numbers(x, _OP_OUTPUTS, "i", "operator outputs"))
                      for x in r.tables(t, _SG_OPERATORS, "operators"))
    return SubGraph(tensors=tensors, inputs=r.numbers(t, _SG_INPUTS, "i", "subgraph inputs"),
                    outputs=r.numbers(t, _SG_OUTPUTS, "i", "subgraph outputs"),
                    operators=operators)


def _buffer(r: _Reader, t: Table) -> Buffer:
    start, n = r.vector(t, _BUF_DATA, 1, "buffer data")
    return Buffer(data_start=start, data_length=n,
                  offset=r.scalar(t, _BUF_OFFSET, N.Uint64Flags, 0),
                  size=r.scalar(t, _BUF_SIZE, N.Uint64Flags, 0))


def read_model(data: bytes) -> Model:
    """Parses a whole ``.tflite`` flatbuffer (file bytes) into a :class:`Model`.

    Raises:
        FlatbufferError: no ``TFL3`` identifier, or an offset/length outside the buffer.
    """
    data = bytes(data)
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise FlatbufferError("no TFL3 flatbuffer identifier")
    r = _Reader(data)
    try:
        root = r.table(r.u32(0, "root offset"), "model")
        return Model(
            version=r.scalar(root, _MODEL_VERSION, N.Uint32Flags, 0),
            operator_codes=tuple(
                OperatorCode(deprecated_builtin_code=r.scalar(x, _OC_DEPRECATED, N.Int8Flags, 0),
                             builtin_code=r.scalar(x, _OC_BUILTIN, N.Int32Flags, 0),
                             custom_code=r.string(x, _OC_CUSTOM, "custom code"))
                for x in r.tables(root, _MODEL_OPCODES, "operator codes")),
            subgraphs=tuple(_subgraph(r, x) for x in r.tables(root, _MODEL_SUBGRAPHS, "subgraphs")),
            buffers=tuple(_buffer(r, x) for x in r.tables(root, _MODEL_BUFFERS, "buffers")),
            metadata=tuple(Metadata(name=r.string(x, _MD_NAME, "metadata name") or "",
                                    buffer=r.scalar(x, _MD_BUFFER, N.Uint32Flags, 0))
                           for x in r.tables(root, _MODEL_METADATA, "metadata")),
            data=data)
    except FlatbufferError:
        raise
    except (struct.error, IndexError, OverflowError, TypeError) as e:  # belt and braces
        raise FlatbufferError(f"{type(e).__name__}: {e}") from None
