"""The few facts about a ``.tflite`` flatbuffer the metadata reader/writer need (no TensorFlow).

Reads the flatbuffer with the contract's own reader (:mod:`edge_deeplab.core.contract.tflite_reader`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional, Tuple, Union

from edge_deeplab.core.contract.metadata import metadata_entry_bytes
from edge_deeplab.core.contract.tflite_reader import FlatbufferError, read_model
from edge_deeplab.core.errors import EdgeDeeplabError

#: Name of the standard metadata entry in the model's ``metadata`` table.
METADATA_BUFFER_NAME = "TFLITE_METADATA"


@dataclasses.dataclass(frozen=True)
class TensorFacts:
    """Shape, dtype name and per-tensor quantization of a graph input or output."""

    name: str
    shape: Tuple[int, ...]
    dtype: str
    scale: Optional[float] = None
    zero_point: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    num_subgraphs: int
    inputs: Tuple[TensorFacts, ...]
    outputs: Tuple[TensorFacts, ...]
    metadata_buffer: Optional[bytes]  # the TFLITE_METADATA entry's bytes, None when absent


def load_bytes(path_or_bytes: Union[str, os.PathLike, bytes, bytearray, memoryview]) -> Tuple[bytes, str]:
    """``(bytes, what)`` where ``what`` names the source in error messages."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes), "model bytes"
    p = Path(path_or_bytes)
    if not p.is_file():
        raise EdgeDeeplabError(f"TFLite model not found: {p}")
    try:
        return p.read_bytes(), str(p)
    except OSError as e:
        raise EdgeDeeplabError(f"cannot read {p}: {e.strerror or e}") from None


def _tensor(sg, index: int) -> TensorFacts:
    if not 0 <= index < len(sg.tensors):
        raise FlatbufferError(f"graph input/output {index} is not one of the "
                              f"{len(sg.tensors)} tensors")
    t = sg.tensors[index]
    q = t.quantization
    scale = zp = None
    if q is not None and len(q.scale) == 1:
        scale, zp = float(q.scale[0]), int(q.zero_point[0]) if q.zero_point else 0
    return TensorFacts(name=t.name, shape=tuple(int(s) for s in t.shape), dtype=t.dtype,
                       scale=scale, zero_point=zp)


def model_facts(data: bytes, what: str = "model") -> ModelFacts:
    """Parses the flatbuffer; one-line :class:`EdgeDeeplabError` for garbage or truncation."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgeDeeplabError(f"not a TFLite model: {what} (no TFL3 identifier)")
    try:
        model = read_model(data)
        if not model.subgraphs:
            raise FlatbufferError("no subgraphs")
        sg = model.subgraphs[0]
        inputs = tuple(_tensor(sg, int(i)) for i in sg.inputs)
        outputs = tuple(_tensor(sg, int(i)) for i in sg.outputs)
    except FlatbufferError as e:
        raise EdgeDeeplabError(f"corrupt or truncated TFLite model: {what} ({e})") from None
    raw = metadata_entry_bytes(model, METADATA_BUFFER_NAME, what)
    return ModelFacts(len(model.subgraphs), inputs, outputs, raw)
