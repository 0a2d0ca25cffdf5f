"""The few facts about a ``.tflite`` flatbuffer the metadata reader/writer need (no TensorFlow).

Uses ``ai_edge_litert.schema_py_generated`` (the TFLite model schema that ships with LiteRT).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional, Tuple, Union

from edge_deeplab.core.contract.metadata import metadata_entry_bytes
from edge_deeplab.core.errors import EdgeDeeplabError

#: Name of the standard metadata entry in the model's ``metadata`` table.
METADATA_BUFFER_NAME = "TFLITE_METADATA"
_TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool",
                 7: "int16", 9: "int8", 10: "float64"}


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
    t = sg.Tensors(index)
    q = t.Quantization()
    scale = zp = None
    if q is not None and q.ScaleLength() == 1:
        scale, zp = float(q.Scale(0)), int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0
    return TensorFacts(name=(t.Name() or b"").decode("utf-8", "replace"),
                       shape=tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else (),
                       dtype=_TENSOR_TYPES.get(t.Type(), f"type{t.Type()}"),
                       scale=scale, zero_point=zp)


def model_facts(data: bytes, what: str = "model") -> ModelFacts:
    """Parses the flatbuffer; one-line :class:`EdgeDeeplabError` for garbage or truncation."""
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgeDeeplabError(f"not a TFLite model: {what} (no TFL3 identifier)")
    try:
        model = schema.Model.GetRootAs(data, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraphs")
        sg = model.Subgraphs(0)
        inputs = tuple(_tensor(sg, int(i)) for i in sg.InputsAsNumpy())
        outputs = tuple(_tensor(sg, int(i)) for i in sg.OutputsAsNumpy())
        raw = metadata_entry_bytes(model, data, METADATA_BUFFER_NAME)
        n_sub = model.SubgraphsLength()
    except EdgeDeeplabError:
        raise
    except Exception as e:  # noqa: BLE001 - struct.error, IndexError on truncated buffers
        raise EdgeDeeplabError(f"corrupt or truncated TFLite model: {what} "
                               f"({type(e).__name__})") from None
    return ModelFacts(n_sub, inputs, outputs, raw)
