"""Writes the standard TFLite model metadata (``TFLITE_METADATA``) that phone SDKs read.

What MediaPipe Tasks ``ImageSegmenter`` and the TFLite Task Library read, and where this writes it:

* input tensor: ``ImageProperties`` (RGB), a ``NormalizationOptions`` process unit (mean/std the
  input expects, applied to 0..255 pixels; required for float32 inputs) and ``Stats`` min/max;
* output tensor: ``ImageProperties`` (GRAYSCALE, range dims 1..2, as the Task Library's segmenter
  writer does) with the labels as an associated ``TENSOR_AXIS_LABELS`` file ``labels.txt``;
* ``SubGraphMetadata.custom_metadata`` ``SEGMENTER_METADATA``: MediaPipe's ``ImageSegmenterOptions``
  with the activation (softmax for logits, none for class maps and probabilities);
* ``custom_metadata`` ``EDGE_DEEPLAB``: a small JSON (toolkit version, output kind) for our reader;
* associated files are appended to the flatbuffer as an uncompressed zip archive, as the TFLite
  metadata spec (and tflite-support's populator) does; MediaPipe reads them from that zip.

Example:
    >>> data = write_standard_metadata(tflite, name="DeepLab", description="...", version="1",
    ...     author="me", toolkit_version="0.1", labels=["bg", "person"], mean=[127.5],
    ...     std=[127.5], input_range=None, output_kind="logits", activation=None)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Optional, Sequence

import numpy as np

from edge_deeplab.core.contract.tflite_metadata._model import METADATA_BUFFER_NAME, model_facts
from edge_deeplab.core.contract.tflite_metadata._schema import metadata_schema_py_generated as md
from edge_deeplab.core.contract.tflite_metadata._segmenter import (
    SEGMENTER_METADATA_NAME,
    build_segmenter_options,
)
from edge_deeplab.core.errors import EdgeDeeplabError

LABELS_FILE = "labels.txt"
CONFIG_FILE = "edge_deeplab.json"
TOOLKIT_METADATA_NAME = "EDGE_DEEPLAB"
METADATA_FILE_IDENTIFIER = b"M001"
#: custom_metadata in SubGraphMetadata needs schema 1.5.0.
MIN_PARSER_VERSION = "1.5.0"
#: Probabilities are final (the graph applied its softmax/sigmoid): MediaPipe adds nothing.
_DEFAULT_ACTIVATION = {"logits": "softmax", "classmap": "none", "probabilities": "none"}
OUTPUT_KINDS = tuple(_DEFAULT_ACTIVATION)
_OUTPUT_TENSOR = {"logits": ("segmentation_masks", "Per-pixel class scores (logits), one channel per label."),
                  "classmap": ("class_map", "Per-pixel class index (argmax over the labels)."),
                  "probabilities": ("probabilities", "Per-pixel probability of each label (one channel per "
                                    "label; the portrait head's is the person's, at the logits' "
                                    "resolution: MediaPipe resizes confidence masks to the image).")}


def check_labels(labels: Sequence[str], num_classes: Optional[int]) -> list:
    """Labels as a list of non-empty single-line names; count must match ``num_classes``."""
    out = [str(x).strip() for x in labels]
    bad = [x for x in out if not x or "\n" in x]
    if bad:
        raise EdgeDeeplabError("labels must be non-empty single-line names")
    if num_classes is not None and len(out) != num_classes:
        raise EdgeDeeplabError(f"{len(out)} labels given for a model with {num_classes} classes")
    return out


def _plain(o):
    """JSON fallback for numpy scalars/arrays and paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "__fspath__"):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _per_channel(v, what) -> list:
    a = np.atleast_1d(np.asarray(v, np.float64)).ravel()
    if a.size not in (1, 3):
        raise EdgeDeeplabError(f"normalization {what} needs 1 or 3 values, got {a.size}")
    return [float(x) for x in np.broadcast_to(a, (3,))]


def default_input_range(dtype: str, mean, std):
    """``(min, max)`` per channel of the values the input tensor takes for 0..255 pixels."""
    if dtype == "uint8":
        return [0.0] * 3, [255.0] * 3
    if dtype == "int8":
        return [-128.0] * 3, [127.0] * 3
    m, s = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    return [float(x) for x in (0 - m) / s], [float(x) for x in (255 - m) / s]


def _image_content(color_space: int, rng=None):
    c = md.ContentT()
    c.contentPropertiesType = md.ContentProperties.ImageProperties
    c.contentProperties = md.ImagePropertiesT()
    c.contentProperties.colorSpace = color_space
    if rng is not None:
        c.range = md.ValueRangeT()
        c.range.min, c.range.max = rng
    return c


def _custom(name: str, data: bytes):
    cm = md.CustomMetadataT()
    cm.name = name
    cm.data = list(data)
    return cm


def build_metadata_buffer(*, name, description, version, author, labels, mean, std, input_min,
                          input_max, output_kind, activation, toolkit_version,
                          input_name="image", output_name=None, extra_json=False) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) for one image-in, mask-out graph."""
    tin = md.TensorMetadataT()
    tin.name = input_name
    tin.description = ("Input image, RGB. Apply (pixel - mean) / std per channel to 0..255 pixels "
                       "(NormalizationOptions), then the tensor's quantization if it has one.")
    tin.content = _image_content(md.ColorSpaceType.RGB)
    pu = md.ProcessUnitT()
    pu.optionsType = md.ProcessUnitOptions.NormalizationOptions
    pu.options = md.NormalizationOptionsT()
    pu.options.mean, pu.options.std = list(mean), list(std)
    tin.processUnits = [pu]
    tin.stats = md.StatsT()
    tin.stats.min, tin.stats.max = list(input_min), list(input_max)

    tout = md.TensorMetadataT()
    tout.name = output_name or _OUTPUT_TENSOR[output_kind][0]
    tout.description = _OUTPUT_TENSOR[output_kind][1]
    tout.content = _image_content(md.ColorSpaceType.GRAYSCALE, (1, 2))
    af = md.AssociatedFileT()
    af.name = LABELS_FILE
    af.description = "Labels for the categories the model segments, one per line, in class order."
    af.type = md.AssociatedFileType.TENSOR_AXIS_LABELS
    tout.associatedFiles = [af]

    sg = md.SubGraphMetadataT()
    sg.name = "ImageSegmenter"
    sg.inputTensorMetadata = [tin]
    sg.outputTensorMetadata = [tout]
    toolkit = {"toolkit": "edge_deeplab", "toolkit_version": str(toolkit_version),
               "output_kind": output_kind}
    sg.customMetadata = [
        _custom(SEGMENTER_METADATA_NAME, build_segmenter_options(activation)),
        _custom(TOOLKIT_METADATA_NAME, json.dumps(toolkit, sort_keys=True).encode("utf-8")),
    ]

    mm = md.ModelMetadataT()
    mm.name, mm.description, mm.version, mm.author = (str(name), str(description), str(version),
                                                      str(author))
    mm.subgraphMetadata = [sg]
    mm.minParserVersion = MIN_PARSER_VERSION
    if extra_json:
        cfg = md.AssociatedFileT()
        cfg.name = CONFIG_FILE
        cfg.description = "edge_deeplab's own metadata (config, labels, normalization, export)."
        cfg.type = md.AssociatedFileType.UNKNOWN
        mm.associatedFiles = [cfg]

    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(mm.Pack(b), file_identifier=METADATA_FILE_IDENTIFIER)
    return bytes(b.Output())


def replace_metadata_entry(tflite: bytes, payload: bytes) -> bytes:
    """``tflite`` (any appended zip dropped) with its ``TFLITE_METADATA`` entry set to ``payload``."""
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    from edge_deeplab.core.contract.metadata import set_metadata_entry

    model = fbu.read_model_from_bytearray(bytearray(tflite))
    set_metadata_entry(model, METADATA_BUFFER_NAME, payload)
    return bytes(fbu.convert_object_to_bytearray(model))


def append_associated_files(tflite: bytes, files: dict) -> bytes:
    """Appends ``{name: bytes}`` as an uncompressed zip archive (absolute offsets) to the model."""
    bio = io.BytesIO(tflite)
    bio.seek(0, io.SEEK_END)
    with zipfile.ZipFile(bio, "a", compression=zipfile.ZIP_STORED) as zf:
        for fname, content in files.items():
            info = zipfile.ZipInfo(fname, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, content)
    return bio.getvalue()


def write_standard_metadata(tflite_bytes: bytes, *, name: str, description: str, version: str,
                            author: str, toolkit_version: str, labels: Sequence[str], mean, std,
                            input_range=None, output_kind: str = "logits",
                            activation: Optional[str] = None,
                            extra_json: Optional[dict] = None) -> bytes:
    """Returns ``tflite_bytes`` with standard TFLite metadata and its associated files.

    Args:
        tflite_bytes: a single-subgraph model with one NHWC image input and one output. An existing
            ``TFLITE_METADATA`` entry and appended zip are replaced; other metadata entries (e.g.
            our ``edge_deeplab`` JSON entry, ``min_runtime_version``) and signatures are kept.
        name, description, version, author: ``ModelMetadata`` fields.
        toolkit_version: recorded in the ``EDGE_DEEPLAB`` custom metadata.
        labels: class names in class order (``labels.txt``); for logits their count must equal
            the output's channel count.
        mean, std: 1 or 3 values; what the input tensor expects is ``(pixel - mean) / std`` on
            0..255 RGB pixels (then the tensor's quantization). Raw-pixel inputs: mean 0, std 1.
        input_range: ``(min, max)`` per channel (scalars broadcast) for ``Stats``; ``None``
            derives it from the input dtype and mean/std.
        output_kind: ``"logits"`` (``(1, H, W, C)`` scores), ``"classmap"`` (class indices) or
            ``"probabilities"`` (``(1, h, w, C)`` final probabilities, e.g. the portrait head's
            one person channel).
        activation: ``"softmax"``, ``"sigmoid"`` or ``"none"`` (MediaPipe's ImageSegmenterOptions);
            ``None``: softmax for logits, none for class maps and probabilities.
        extra_json: also ship this dict as the associated file ``edge_deeplab.json``.

    Raises:
        EdgeDeeplabError: not an image-in/one-output model, label count or normalization invalid.
    """
    if output_kind not in OUTPUT_KINDS:
        raise EdgeDeeplabError(f"unknown output kind {output_kind!r}; choose one of "
                               f"{', '.join(OUTPUT_KINDS)}")
    activation = activation or _DEFAULT_ACTIVATION[output_kind]
    if activation not in ("none", "sigmoid", "softmax"):
        raise EdgeDeeplabError(f"unknown activation {activation!r}; choose none, sigmoid or softmax")
    facts = model_facts(bytes(tflite_bytes))
    if facts.num_subgraphs != 1 or len(facts.inputs) != 1 or len(facts.outputs) != 1:
        raise EdgeDeeplabError("standard segmentation metadata needs one subgraph with one input "
                               "and one output")
    tin, tout = facts.inputs[0], facts.outputs[0]
    if len(tin.shape) != 4 or tin.shape[-1] not in (1, 3, 4):
        raise EdgeDeeplabError(f"input shape {list(tin.shape)} is not an NHWC image")
    n_cls = int(tout.shape[-1]) if output_kind != "classmap" and len(tout.shape) == 4 else None
    labels = check_labels(labels, n_cls)
    mean, std = _per_channel(mean, "mean"), _per_channel(std, "std")
    if any(s == 0 for s in std):
        raise EdgeDeeplabError("normalization std must be non-zero")
    if input_range is None:
        lo, hi = default_input_range(tin.dtype, mean, std)
    else:
        lo, hi = (_per_channel(v, "range") for v in input_range)
    payload = build_metadata_buffer(
        name=name, description=description, version=version, author=author, labels=labels,
        mean=mean, std=std, input_min=lo, input_max=hi, output_kind=output_kind,
        activation=activation, toolkit_version=toolkit_version, input_name=tin.name or "image",
        output_name=tout.name or None, extra_json=extra_json is not None)
    data = replace_metadata_entry(bytes(tflite_bytes), payload)
    files = {LABELS_FILE: ("\n".join(labels) + "\n").encode("utf-8")}
    if extra_json is not None:
        files[CONFIG_FILE] = json.dumps(extra_json, indent=1, default=_plain).encode("utf-8")
    return append_associated_files(data, files)
