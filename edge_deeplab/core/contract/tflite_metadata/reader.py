"""Reads the standard TFLite model metadata (``TFLITE_METADATA``) of any segmentation model.

Works on our exports and on third-party models written by tflite-support's or MediaPipe's metadata
writers. Associated files (``labels.txt``) are read from the zip archive appended to the model.

Example:
    >>> m = read_standard_metadata("model.tflite")        # doctest: +SKIP
    >>> m.labels[:2], m.mean, m.std, m.activation           # doctest: +SKIP
    (('background', 'person'), (127.5, 127.5, 127.5), (127.5, 127.5, 127.5), 'softmax')
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from typing import Optional, Tuple, Union

from edge_deeplab.core.contract.tflite_metadata._model import load_bytes, model_facts
from edge_deeplab.core.contract.tflite_metadata._schema import metadata_schema_py_generated as md
from edge_deeplab.core.contract.tflite_metadata._segmenter import (
    SEGMENTER_METADATA_NAME,
    parse_segmenter_options,
)
from edge_deeplab.core.contract.tflite_metadata.writer import CONFIG_FILE, TOOLKIT_METADATA_NAME
from edge_deeplab.core.errors import EdgeDeeplabError, first_line

_COLOR = {0: "unknown", 1: "rgb", 2: "grayscale"}


@dataclasses.dataclass(frozen=True)
class StandardMetadata:
    """What the ``TFLITE_METADATA`` entry says about an image segmentation model.

    ``mean``/``std`` are ``None`` when the input has no ``NormalizationOptions``; ``activation`` is
    ``None`` without MediaPipe's ``SEGMENTER_METADATA`` (MediaPipe then uses NONE). ``output_kind``
    is ``"logits"``/``"classmap"``/``"probabilities"`` when the metadata or the output tensor says
    so, else ``None``.
    """

    name: Optional[str] = None
    description: Optional[str] = None
    version: Optional[str] = None
    author: Optional[str] = None
    min_parser_version: Optional[str] = None
    labels: Optional[Tuple[str, ...]] = None
    labels_file: Optional[str] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    input_min: Optional[Tuple[float, ...]] = None
    input_max: Optional[Tuple[float, ...]] = None
    input_color_space: Optional[str] = None
    output_color_space: Optional[str] = None
    activation: Optional[str] = None
    output_kind: Optional[str] = None
    toolkit_version: Optional[str] = None
    associated_files: Tuple[str, ...] = ()
    extra_json: Optional[dict] = None

    def normalization(self) -> Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]]:
        """``(mean, std)`` per channel (3 values), or ``None`` without NormalizationOptions."""
        if self.mean is None or self.std is None:
            return None
        return _three(self.mean), _three(self.std)

    def to_contract_dict(self) -> dict:
        """The keys eval/bench/demo read from a model's metadata dict (labels, normalization, output).

        Only what the standard metadata states is included, so merging this over our JSON
        metadata (``{**json, **std.to_contract_dict()}``) prefers the standard fields and keeps
        the rest.
        """
        d: dict = {}
        if self.labels:
            d["labels"] = list(self.labels)
        norm = self.normalization()
        if norm is not None:
            d["normalization"] = {"mean": list(norm[0]), "std": list(norm[1])}
            # raw-pixel inputs say so through mean 0 / std 1; keep the legacy flag consistent
            d["normalize_in_graph"] = all(m == 0 for m in norm[0]) and all(s == 1 for s in norm[1])
        if self.output_kind:
            d["output"] = self.output_kind
        d["tflite_metadata"] = {"name": self.name, "version": self.version,
                                "activation": self.activation}
        return d


def _three(v) -> Tuple[float, ...]:
    v = tuple(float(x) for x in v)
    return v * 3 if len(v) == 1 else v


def _s(v) -> Optional[str]:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else v


def _zip_files(data: bytes) -> dict:
    """``{name: bytes}`` of the zip appended to the model ({} when there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {i.filename: zf.read(i) for i in zf.infolist()}
    except zipfile.BadZipFile:
        return {}


def _first_file(files, ftype) -> Optional[str]:
    for f in files or []:
        if f.type == ftype and f.name:
            return _s(f.name)
    return None


def _parse(raw: bytes, data: bytes, output_dtype: str, output_rank: int) -> StandardMetadata:
    if len(raw) < 8:
        raise ValueError(f"buffer is {len(raw)} bytes")
    if not md.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0):
        raise ValueError("no M001 file identifier")
    mm = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAs(bytearray(raw), 0))
    sgs = mm.subgraphMetadata or []
    if len(sgs) != 1:
        raise ValueError(f"{len(sgs)} subgraph metadata entries (expected 1)")
    sg = sgs[0]
    tin = (sg.inputTensorMetadata or [None])[0]
    tout = (sg.outputTensorMetadata or [None])[-1]
    files = _zip_files(data)
    mean = std = lo = hi = None
    in_cs = out_cs = None
    if tin is not None:
        for pu in tin.processUnits or []:
            if pu.optionsType == md.ProcessUnitOptions.NormalizationOptions and pu.options:
                mean = tuple(float(x) for x in (pu.options.mean if pu.options.mean is not None else []))
                std = tuple(float(x) for x in (pu.options.std if pu.options.std is not None else []))
                if len(mean) != len(std) or len(mean) not in (1, 3):
                    raise ValueError(f"NormalizationOptions has {len(mean)} means and "
                                     f"{len(std)} stds (expected 1 or 3 of each)")
                if any(s == 0 for s in std):
                    raise ValueError("NormalizationOptions std is 0")
                break
        if tin.stats is not None:
            lo = tuple(float(x) for x in tin.stats.min) if tin.stats.min is not None else None
            hi = tuple(float(x) for x in tin.stats.max) if tin.stats.max is not None else None
        if tin.content and tin.content.contentPropertiesType == md.ContentProperties.ImageProperties:
            in_cs = _COLOR.get(tin.content.contentProperties.colorSpace, "unknown")
    labels = labels_file = None
    if tout is not None:
        labels_file = _first_file(tout.associatedFiles, md.AssociatedFileType.TENSOR_AXIS_LABELS) \
            or _first_file(tout.associatedFiles, md.AssociatedFileType.TENSOR_VALUE_LABELS)
        if labels_file is not None:
            if labels_file not in files:
                raise ValueError(f"labels file {labels_file} is not in the model's zip archive")
            text = files[labels_file].decode("utf-8", "replace")
            labels = tuple(line.strip() for line in text.splitlines() if line.strip())
        if tout.content and tout.content.contentPropertiesType == md.ContentProperties.ImageProperties:
            out_cs = _COLOR.get(tout.content.contentProperties.colorSpace, "unknown")
    activation = kind = toolkit = None
    for cm in sg.customMetadata or []:
        name = _s(cm.name)
        blob = bytes(bytearray(cm.data if cm.data is not None else []))
        if name == SEGMENTER_METADATA_NAME:
            activation = parse_segmenter_options(blob)[0]
        elif name == TOOLKIT_METADATA_NAME:
            info = json.loads(blob.decode("utf-8"))
            kind, toolkit = info.get("output_kind"), info.get("toolkit_version")
    if kind is None:
        if output_dtype in ("int32", "int64") or output_rank == 3:
            kind = "classmap"
        elif activation in ("softmax", "sigmoid"):
            kind = "logits"
    extra = None
    if CONFIG_FILE in files:
        extra = json.loads(files[CONFIG_FILE].decode("utf-8"))
    return StandardMetadata(
        name=_s(mm.name), description=_s(mm.description), version=_s(mm.version),
        author=_s(mm.author), min_parser_version=_s(mm.minParserVersion), labels=labels,
        labels_file=labels_file, mean=mean, std=std, input_min=lo, input_max=hi,
        input_color_space=in_cs, output_color_space=out_cs, activation=activation,
        output_kind=kind, toolkit_version=toolkit, associated_files=tuple(sorted(files)),
        extra_json=extra)


def read_standard_metadata(path_or_bytes: Union[str, os.PathLike, bytes]) -> Optional[StandardMetadata]:
    """The model's standard metadata, or ``None`` when it has no ``TFLITE_METADATA`` entry.

    Raises:
        EdgeDeeplabError: one line, for a missing/garbage model or malformed metadata (bad
            flatbuffer, labels file missing from the zip, inconsistent normalization ...).
    """
    data, what = load_bytes(path_or_bytes)
    facts = model_facts(data, what)
    if facts.metadata_buffer is None:
        return None
    out = facts.outputs[-1] if facts.outputs else None
    try:
        return _parse(facts.metadata_buffer, data, out.dtype if out else "",
                      len(out.shape) if out else 0)
    except EdgeDeeplabError:
        raise
    except Exception as e:  # noqa: BLE001 - struct.error, IndexError, ValueError, JSON errors
        msg = first_line(e)
        raise EdgeDeeplabError(f"malformed TFLITE_METADATA in {what}: {msg}") from None
