"""Metadata that travels inside a ``.tflite`` file (and beside it).

Every model :mod:`converters.export` writes carries one JSON document (config, labels, input
normalization, output kind, quantization notes) in two places:

* the flatbuffer's ``metadata`` table, as an entry named :data:`METADATA_NAME` (``"edge_deeplab"``)
  whose buffer holds UTF-8 JSON. TFLite runtimes ignore unknown metadata entries, so the model
  still loads everywhere; :func:`read_tflite_metadata` reads it back without TensorFlow;
* a JSON sidecar ``X.json`` beside ``X.tflite`` (see :func:`sidecar_path`), for tools that cannot
  parse flatbuffers.

The same pass gives the graph a ``serving_default`` signature (input ``image``, output ``logits``
or ``classmap``), which the LiteRT ``CompiledModel`` API looks up by name.

Reading needs only ``flatbuffers`` (:mod:`~edge_deeplab.core.contract.tflite_reader`), so it works
beside ``tflite_runtime`` alone; writing (export time) uses ``ai_edge_litert``'s object API.
TensorFlow is never imported here.

What the entries *mean* (labels, normalization, output kind, variant, person class) is answered by
:mod:`edge_deeplab.core.contract.semantics`.

Example:
    >>> from edge_deeplab.core.contract.metadata import read_tflite_metadata
    >>> meta = read_tflite_metadata("model.tflite")   # doctest: +SKIP
    >>> meta["labels"][:2], meta["output"]             # doctest: +SKIP
    (['background', 'aeroplane'], 'logits')
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

from edge_deeplab.core.errors import EdgeDeeplabError, first_line

#: Name of our entry in the flatbuffer's ``metadata`` table.
METADATA_NAME = "edge_deeplab"
#: Signature key written into exported models.
SIGNATURE_KEY = "serving_default"
_IDENT = b"TFL3"


def sidecar_path(model_path) -> Path:
    """``X.tflite`` / ``M.keras`` / ``M.h5`` -> the JSON metadata beside it (``X.json``).

    Example:
        >>> sidecar_path("out/m_int8.tflite").as_posix()
        'out/m_int8.json'
    """
    return Path(model_path).with_suffix(".json")


def load_tflite_bytes(path_or_bytes) -> bytes:
    """The bytes of a ``.tflite`` path (or the bytes given); one-line error when unreadable."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    p = Path(path_or_bytes)
    if not p.exists():
        raise EdgeDeeplabError(f"TFLite model not found: {p}")
    if not p.is_file():
        raise EdgeDeeplabError(f"TFLite model is not a file: {p}")
    try:
        return p.read_bytes()
    except OSError as e:
        raise EdgeDeeplabError(f"cannot read {p}: {e.strerror or e}") from None


def check_tflite_bytes(data: bytes, what: str = "") -> None:
    """Raises :class:`EdgeDeeplabError` unless ``data`` looks like a TFLite flatbuffer."""
    where = f" {what}" if what else ""
    if len(data) < 8 or data[4:8] != _IDENT:
        raise EdgeDeeplabError(
            f"not a TFLite model{where} (no TFL3 flatbuffer identifier, {len(data)} bytes)")


def parse_model(data: bytes, what: str = ""):
    """Parses flatbuffer bytes into a read-only :class:`~edge_deeplab.core.contract.tflite_reader.Model`.

    The contract's own reader (no TensorFlow, no LiteRT: it works beside ``tflite_runtime`` alone)
    parses every table up front, so truncation surfaces here, not later.

    Raises:
        EdgeDeeplabError: for empty, truncated or garbage input.
    """
    from edge_deeplab.core.contract.tflite_reader import FlatbufferError, read_model

    check_tflite_bytes(data, what)
    where = f" {what}" if what else ""
    try:
        model = read_model(data)
        if not model.subgraphs:
            raise FlatbufferError("no subgraphs")
    except FlatbufferError as e:
        raise EdgeDeeplabError(f"corrupt or truncated TFLite model{where} ({len(data)} bytes: "
                               f"{first_line(e)})") from None
    return model


def metadata_entry_bytes(model, name: str, what: str = "") -> Optional[bytes]:
    """The bytes of metadata entry ``name`` of a :func:`parse_model` ``Model``, or None.

    The one reader of a metadata buffer: our JSON entry and the standard ``TFLITE_METADATA``.

    Raises:
        EdgeDeeplabError: the entry names a buffer that is not in the file.
    """
    from edge_deeplab.core.contract.tflite_reader import FlatbufferError

    for md in model.metadata:
        if md.name != name:
            continue
        try:
            return model.buffer_bytes(md.buffer)
        except FlatbufferError as e:
            where = f" {what}" if what else ""
            raise EdgeDeeplabError(f"corrupt or truncated TFLite model{where}: metadata entry "
                                   f"{name}: {first_line(e)}") from None
    return None


def read_tflite_metadata(path_or_bytes: Union[str, os.PathLike, bytes], name: str = METADATA_NAME,
                         sidecar: bool = True) -> Optional[dict]:
    """Reads our JSON metadata from a ``.tflite`` (embedded entry first, then the sidecar).

    Args:
        path_or_bytes: path to a ``.tflite`` file or its bytes.
        name: metadata entry name (default ``"edge_deeplab"``).
        sidecar: if the model has no embedded entry and a path was given, fall back to ``X.json``.

    Returns:
        The metadata dict, or ``None`` if the model carries none (e.g. a foreign model).

    Raises:
        EdgeDeeplabError: missing/garbage/truncated file, or an embedded entry that is not JSON.

    Example:
        >>> meta = read_tflite_metadata("model.tflite")  # doctest: +SKIP
        >>> meta["labels"][:2], meta["normalization"]     # doctest: +SKIP
        (['background', 'aeroplane'], {'mean': [127.5, ...], 'std': [127.5, ...]})
    """
    data = load_tflite_bytes(path_or_bytes)
    what = "" if isinstance(path_or_bytes, (bytes, bytearray, memoryview)) else str(path_or_bytes)
    model = parse_model(data, what)
    raw = metadata_entry_bytes(model, name, what)
    if raw is not None:
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise EdgeDeeplabError(f"corrupt {name} metadata in TFLite model {what}: {e}") from None
    if sidecar and what:
        sc = sidecar_path(what)
        if sc.is_file():
            try:
                return json.loads(sc.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise EdgeDeeplabError(f"corrupt metadata sidecar {sc}: {e}") from None
    return None


def set_metadata_entry(model, name: str, payload: bytes) -> None:
    """Sets the metadata entry ``name`` of an object-API ``ModelT`` to ``payload`` (a new buffer).

    The one place a .tflite metadata entry is written: our JSON (:func:`embed_metadata`) and the
    standard ``TFLITE_METADATA`` flatbuffer (``tflite_metadata.writer``) both go through it.
    """
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    entries = [m for m in (model.metadata or []) if _name(m.name) != name]
    buf = schema.BufferT()
    buf.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    entries.append(entry)
    model.metadata = entries


def embed_metadata(tflite: bytes, meta: dict, name: str = METADATA_NAME,
                   input_name: str = "image", output_name: Optional[str] = None) -> bytes:
    """Returns ``tflite`` with ``meta`` embedded as JSON and a ``serving_default`` signature.

    Args:
        tflite: converter output.
        meta: JSON-serialisable dict (replaces an existing entry of the same name).
        name: metadata entry name.
        input_name: name given to the (single) graph input tensor and signature input.
        output_name: name given to the (single) graph output tensor and signature output
            (``None`` keeps the converter's).

    Returns:
        New flatbuffer bytes (the model's ops and weights are untouched).
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    from edge_deeplab.core.atomic_io import json_default

    parse_model(tflite)
    model = fbu.read_model_from_bytearray(bytearray(tflite))
    payload = json.dumps(meta, sort_keys=False, default=json_default).encode("utf-8")

    set_metadata_entry(model, name, payload)

    sg = model.subgraphs[0]
    if len(sg.inputs) == 1 and len(sg.outputs) == 1:
        t_in, t_out = sg.inputs[0], sg.outputs[0]
        sg.tensors[t_in].name = input_name
        if output_name:
            sg.tensors[t_out].name = output_name
        out_key = output_name or _name(sg.tensors[t_out].name)
        sig = schema.SignatureDefT()
        sig.signatureKey = SIGNATURE_KEY
        sig.subgraphIndex = 0
        ti = schema.TensorMapT()
        ti.name, ti.tensorIndex = input_name, t_in
        to = schema.TensorMapT()
        to.name, to.tensorIndex = out_key, t_out
        sig.inputs, sig.outputs = [ti], [to]
        model.signatureDefs = [sig]
    out = bytes(fbu.convert_object_to_bytearray(model))
    parse_model(out)
    return out


def _name(v) -> str:
    if v is None:
        return ""
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)
