"""What a model's metadata means: the one place that answers labels, normalization, output kind,
variant and person class for every consumer (runtime, evaluation, benchmarks, demo, exporter).

The metadata dict is the JSON document :mod:`edge_deeplab.core.contract.metadata` reads from a
``.tflite`` (embedded entry, else the ``X.json`` sidecar) or :mod:`edge_deeplab.model.model_io`
writes beside a ``.keras`` model. Every function accepts ``None`` (a foreign model without
metadata) and then answers with the toolkit's defaults.

Example:
    >>> normalization({"normalize_in_graph": True})[0].tolist()
    [0.0, 0.0, 0.0]
    >>> output_kind({"output": "classmap"}), output_kind({"output_kind": "softmax"})
    ('classmap', 'probabilities')
    >>> person_class(["background", "Person"], 2)
    (1, "label 'Person' from the model metadata")
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from edge_deeplab.core.contract import variants
from edge_deeplab.core.contract.metadata import (
    load_tflite_bytes,
    parse_model,
    read_tflite_metadata,
    sidecar_path,
)
from edge_deeplab.core.errors import EdgeDeeplabError

#: MobileNet-v2 preprocessing (``x / 127.5 - 1``) expressed as mean/std, as TFLite metadata does.
NORM_MEAN = (127.5, 127.5, 127.5)
NORM_STD = (127.5, 127.5, 127.5)

#: PASCAL VOC class names (the default labels of a 21-class model).
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
#: Label names that mean "person" (case-insensitive), in order of preference.
PERSON_LABELS = ("person", "people", "human", "portrait", "foreground", "fg")
#: VOC's person class.
VOC_PERSON = 15

#: The variant vocabulary: what the exporter writes (``export.variant``) and what the benchmarks
#: report, in the order of the one table of variants (:mod:`edge_deeplab.core.contract.variants`).
#: Models from elsewhere are classified from their tensor types (:func:`variant`).
VARIANTS = variants.names()
#: Variants with integer activations (int8, or int16 for ``w8a16``); their I/O may be integer too.
INTEGER_VARIANTS = variants.where(integer=True)
#: Output kinds (:func:`output_kind`).
OUTPUT_KINDS = ("logits", "probabilities", "classmap")


def labels(metadata: Optional[dict]) -> Optional[List[str]]:
    """Class names from the metadata (``labels``, else ``config.labels``), or None."""
    if not metadata:
        return None
    names = metadata.get("labels")
    if names is None and isinstance(metadata.get("config"), dict):
        names = metadata["config"].get("labels")
    return [str(x) for x in names] if names else None


def has_normalization(metadata: Optional[dict]) -> bool:
    """Whether the metadata says how to normalize the input (or that the graph does it)."""
    meta = metadata or {}
    return bool(meta.get("normalize_in_graph") or meta.get("normalization"))


def normalization(metadata: Optional[dict] = None, mean=None, std=None) -> Tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` float32 (3,) to apply to 0..255 pixels: ``(x - mean) / std``.

    The model's metadata wins (``normalize_in_graph`` means raw pixels: ``(0, 1)``); else ``mean`` /
    ``std`` when given (scalars broadcast); else MobileNet-v2's :data:`NORM_MEAN` / :data:`NORM_STD`.
    """
    meta = metadata or {}
    if meta.get("normalize_in_graph"):
        return np.zeros(3, np.float32), np.ones(3, np.float32)
    norm = meta.get("normalization") or {}
    if norm:
        return (np.asarray(norm.get("mean", NORM_MEAN), np.float32),
                np.asarray(norm.get("std", NORM_STD), np.float32))
    m = np.broadcast_to(np.asarray(NORM_MEAN if mean is None else mean, np.float32), (3,)).copy()
    s = np.broadcast_to(np.asarray(NORM_STD if std is None else std, np.float32), (3,)).copy()
    return m, s


def normalization_dict(metadata: Optional[dict] = None) -> dict:
    """``{"mean": [...], "std": [...]}`` as written into metadata (default MobileNet-v2's)."""
    norm = (metadata or {}).get("normalization")
    return norm or {"mean": list(NORM_MEAN), "std": list(NORM_STD)}


def output_kind(metadata: Optional[dict]) -> Optional[str]:
    """Normalised output kind: ``logits``, ``probabilities``, ``classmap`` or None (unknown)."""
    if not metadata:
        return None
    kind = metadata.get("output_kind")
    out = metadata.get("output")
    if kind is None and isinstance(out, dict):
        kind = out.get("kind") or out.get("type")
    elif kind is None and isinstance(out, str):
        kind = out
    if not kind:
        return None
    k = str(kind).lower()
    if k.startswith("logit"):
        return "logits"
    if k.startswith("prob") or k in ("softmax", "sigmoid"):
        return "probabilities"
    if k in ("argmax", "classmap", "class_map", "classes", "labels", "index"):
        return "classmap"
    return None


def person_class(label_names: Optional[Sequence[str]], num_classes: Optional[int]) -> Optional[Tuple[int, str]]:
    """``(index, reason)`` of the "person" class, or None when no rule identifies it.

    Rules, in order: a label in :data:`PERSON_LABELS` (when the labels match the class count),
    class 1 of a 2-class model, class 15 of a 21-class (VOC) model.
    """
    n = num_classes
    if label_names and (n is None or len(label_names) == n):
        low = [str(name).strip().lower() for name in label_names]
        for name in PERSON_LABELS:
            if name in low:
                i = low.index(name)
                return i, f"label {label_names[i]!r} from the model metadata"
    if n == 2:
        return 1, "binary model: class 1 is the foreground"
    if n == 21:
        return VOC_PERSON, "21-class model: VOC 'person' is class 15"
    return None


def tensor_dtypes(path_or_bytes) -> List[str]:
    """numpy dtype names of every tensor of a ``.tflite``'s main graph (flatbuffer read, no runtime)."""
    return [t.dtype for t in parse_model(load_tflite_bytes(path_or_bytes)).subgraphs[0].tensors]


def variant(path_or_bytes=None, metadata: Optional[dict] = None) -> str:
    """The model's variant: a name of the table of variants when it is one of them or an alias.

    Metadata written by our exporter (``export.variant``, else a top-level ``variant`` /
    ``quantization``) wins when present; otherwise it is read from the tensor types: ``float16``,
    ``w8a16`` (int16 activations), ``int8`` (mostly int8 or uint8 tensors: ``uint8`` is its alias),
    ``dynamic`` (some integer weights; alias ``dynamic-range``) or ``float32``; ``unknown`` when
    unreadable. A name that is no variant of the table (foreign metadata) is returned as written.
    """
    meta = metadata or {}
    export = meta.get("export")
    row = variants.find(str(export.get("variant"))) if isinstance(export, dict) else None
    if row is not None:  # our exporter's
        return row.name
    for key in ("variant", "quantization"):
        v = meta.get(key)
        if isinstance(v, dict):
            v = v.get("mode") or v.get("type")
        if isinstance(v, str) and v:
            return variants.canonical(v)
    if path_or_bytes is None:
        return "unknown"
    try:
        dtypes = tensor_dtypes(path_or_bytes)
    except Exception:  # noqa: BLE001 - best effort
        return "unknown"
    n = max(1, len(dtypes))
    integer = dtypes.count("int8") + dtypes.count("uint8")
    if dtypes.count("float16"):
        return "float16"
    if dtypes.count("int16") / n > 0.3:
        return "w8a16"
    if integer / n > 0.5:
        return "int8"  # int8 or uint8 activations (``uint8`` is the int8 row's alias)
    if integer:
        return "dynamic"  # int8 weights only (``dynamic-range``)
    return "float32"


def read_model_metadata(path) -> Optional[dict]:
    """The model's metadata dict: standard TFLite metadata laid over our JSON (embedded, else X.json).

    Standard metadata (``TFLITE_METADATA``: labels, normalization, output kind, read by
    :mod:`edge_deeplab.core.contract.tflite_metadata`) overrides the same keys of our JSON, so a
    third-party model that carries it needs no flags. Malformed standard metadata is ignored here
    (``analyze`` reports it); the JSON still applies. For a model that normalizes in its graph,
    the standard metadata says raw pixels (mean 0, std 1) and our JSON keeps the graph's own
    normalization: that one stays, as ``graph_normalization`` (the letterbox padding pixel).

    Raises:
        EdgeDeeplabError: a missing, garbage or truncated model, or corrupt metadata JSON.
    """
    from edge_deeplab.core.contract.tflite_metadata import read_standard_metadata

    meta = _read_json_metadata(path)
    try:
        std = read_standard_metadata(path)
    except EdgeDeeplabError:
        std = None
    if std is not None:
        ours = meta or {}
        meta = {**ours, **std.to_contract_dict()}
        if ours.get("normalize_in_graph") and ours.get("normalization"):
            meta["graph_normalization"] = ours["normalization"]
    return meta


def _read_json_metadata(path) -> Optional[dict]:
    """Our JSON metadata: the embedded entry, else the ``X.json`` sidecar, or None."""
    import json

    try:
        meta = read_tflite_metadata(path)
        if meta:
            return meta
    except EdgeDeeplabError:
        raise
    except Exception:  # noqa: BLE001 - metadata is optional; fall back to the sidecar
        pass
    sc = sidecar_path(path)
    if sc.is_file():
        try:
            return json.loads(sc.read_text())
        except ValueError:
            return None
    return None
