"""MediaPipe's ``ImageSegmenterOptions`` custom metadata (``SEGMENTER_METADATA``), built by hand.

MediaPipe Tasks' ``ImageSegmenterGraph`` looks through ``SubGraphMetadata.custom_metadata`` for an
entry named ``SEGMENTER_METADATA`` whose data is an ``ImageSegmenterOptions`` flatbuffer
(mediapipe/tasks/metadata/image_segmenter_metadata_schema.fbs, file identifier ``V001``)::

    enum Activation: byte { NONE = 0, SIGMOID = 1, SOFTMAX = 2 }
    table ImageSegmenterOptions { activation: Activation; min_parser_version: string; }

Without it MediaPipe logs "No activation type is found in model metadata" and uses NONE. Two
fields do not justify a second generated module, so this file writes and reads them with the
flatbuffers Builder/Table directly.
"""

from __future__ import annotations

from typing import Optional, Tuple

import flatbuffers
from flatbuffers import number_types as N
from flatbuffers.table import Table

#: Custom metadata name MediaPipe looks for.
SEGMENTER_METADATA_NAME = "SEGMENTER_METADATA"
SEGMENTER_FILE_IDENTIFIER = b"V001"
SEGMENTER_PARSER_VERSION = "1.0.0"
ACTIVATIONS = ("none", "sigmoid", "softmax")  # index == enum value


def build_segmenter_options(activation: str) -> bytes:
    """``ImageSegmenterOptions`` flatbuffer bytes for ``activation`` (none, sigmoid, softmax)."""
    code = ACTIVATIONS.index(activation)
    b = flatbuffers.Builder(64)
    ver = b.CreateString(SEGMENTER_PARSER_VERSION)
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(1, ver, 0)
    b.PrependInt8Slot(0, code, 0)
    root = b.EndObject()
    b.Finish(root, file_identifier=SEGMENTER_FILE_IDENTIFIER)
    return bytes(b.Output())


def parse_segmenter_options(data: bytes) -> Tuple[str, Optional[str]]:
    """``(activation, min_parser_version)`` of an ``ImageSegmenterOptions`` buffer.

    Raises:
        ValueError: truncated buffer or an activation value outside the enum.
    """
    buf = bytearray(data)
    if len(buf) < 8:
        raise ValueError(f"SEGMENTER_METADATA is {len(buf)} bytes")
    pos = flatbuffers.encode.Get(N.UOffsetTFlags.packer_type, buf, 0)
    if pos >= len(buf):
        raise ValueError("SEGMENTER_METADATA root offset is out of range")
    tab = Table(buf, pos)
    o = tab.Offset(4)
    code = tab.Get(N.Int8Flags, o + tab.Pos) if o else 0
    if not 0 <= code < len(ACTIVATIONS):
        raise ValueError(f"SEGMENTER_METADATA activation {code} is not NONE/SIGMOID/SOFTMAX")
    o = tab.Offset(6)
    version = tab.String(o + tab.Pos).decode("utf-8", "replace") if o else None
    return ACTIVATIONS[code], version
