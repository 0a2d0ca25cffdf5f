"""Will MediaPipe Tasks / the TFLite Task Library ``ImageSegmenter`` accept this model?

The rules mirror what those clients check when they load a segmenter (MediaPipe:
``vision/utils/image_tensor_specs.cc``, ``components/processors/image_preprocessing_graph.cc``,
``vision/image_segmenter/image_segmenter_graph.cc``; the Task Library's ``ImageSegmenter`` shares
the input checks):

* one subgraph, one input ``1 x H x W x 3`` (MediaPipe also takes 4 channels);
* input tensor uint8 or float32 (no int8); float32 needs ``NormalizationOptions``; MediaPipe's
  preprocessing takes one mean/std for all channels;
* a uint8 input gets raw 0..255 pixels (the normalization is not applied): right only when the
  input quantization maps raw pixels onto the normalized values;
* output ``1 x H x W x C`` float32/uint8 scores; labels come from the output's ``TENSOR_AXIS_LABELS``
  file, the activation from ``SEGMENTER_METADATA`` (NONE when absent).

Example:
    >>> c = mediapipe_compatibility("model.tflite")     # doctest: +SKIP
    >>> c.accepted, c.problems                          # doctest: +SKIP
    (False, ('input tensor is int8: MediaPipe Tasks takes only uint8 or float32 image inputs ...',))
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple, Union

import numpy as np

from edge_deeplab.core.contract.tflite_metadata._model import load_bytes, model_facts
from edge_deeplab.core.contract.tflite_metadata.reader import (
    StandardMetadata,
    read_standard_metadata,
)
from edge_deeplab.core.errors import EdgeDeeplabError


@dataclasses.dataclass(frozen=True)
class Compatibility:
    """Verdict for MediaPipe Tasks ``ImageSegmenter`` (and the Task Library's, which is stricter
    about outputs only). ``problems`` make a client refuse the model or segment wrongly;
    ``warnings`` are degraded behaviour (no labels, default activation)."""

    accepted: bool
    problems: Tuple[str, ...]
    warnings: Tuple[str, ...]
    task_library_accepted: bool
    task_library_problems: Tuple[str, ...]

    def summary(self) -> str:
        """One line: ``MediaPipe Tasks: accepts`` or ``MediaPipe Tasks: refuses (...)``."""
        mp = "accepts" if self.accepted else "refuses (" + "; ".join(self.problems) + ")"
        tl = "accepts" if self.task_library_accepted else \
            "refuses (" + "; ".join(self.task_library_problems) + ")"
        return f"MediaPipe Tasks ImageSegmenter: {mp}. TFLite Task Library ImageSegmenter: {tl}."

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def raw_pixel_error(scale: float, zero_point: int, mean, std) -> float:
    """Max |scale*(p - zp) - (p - mean)/std| over p in 0..255, in quantization steps."""
    p = np.arange(256, dtype=np.float64)[:, None]
    m = np.broadcast_to(np.asarray(mean, np.float64), (3,))[None]
    s = np.broadcast_to(np.asarray(std, np.float64), (3,))[None]
    return float(np.max(np.abs(scale * (p - zero_point) - (p - m) / s)) / scale)


def mediapipe_compatibility(path_or_bytes: Union[str, os.PathLike, bytes],
                            metadata: Optional[StandardMetadata] = None) -> Compatibility:
    """Checks the model against MediaPipe Tasks' and the Task Library's ImageSegmenter rules.

    Args:
        path_or_bytes: the ``.tflite``.
        metadata: its :func:`read_standard_metadata` result, if already read.

    Raises:
        EdgeDeeplabError: the file is not a TFLite model. Malformed metadata is reported as a
            problem, not raised.
    """
    data, what = load_bytes(path_or_bytes)
    facts = model_facts(data, what)
    problems, warnings, tl_only = [], [], []
    if metadata is None:
        try:
            metadata = read_standard_metadata(data)
        except EdgeDeeplabError as e:
            problems.append(str(e).replace(" in model bytes", ""))
            metadata = None
    if facts.num_subgraphs != 1:
        problems.append(f"{facts.num_subgraphs} subgraphs (needs exactly 1)")
    if len(facts.inputs) != 1 or len(facts.outputs) != 1:
        problems.append(f"{len(facts.inputs)} inputs / {len(facts.outputs)} outputs (needs 1 / 1)")
    if facts.inputs:
        tin = facts.inputs[0]
        if len(tin.shape) != 4 or tin.shape[0] != 1 or tin.shape[-1] not in (3, 4):
            problems.append(f"input shape {list(tin.shape)} is not 1 x H x W x 3")
        norm = metadata.normalization() if metadata is not None else None
        if tin.dtype == "int8":
            problems.append("input tensor is int8: MediaPipe Tasks and the Task Library take only "
                            "uint8 or float32 image inputs (export with --io-type uint8 or float32)")
        elif tin.dtype not in ("uint8", "float32"):
            problems.append(f"input tensor is {tin.dtype}: only uint8 or float32 image inputs")
        elif tin.dtype == "float32":
            if norm is None:
                problems.append("float32 input without NormalizationOptions metadata (MediaPipe: "
                                "\"it requires specifying NormalizationOptions metadata\")")
            elif len(set(norm[0])) > 1 or len(set(norm[1])) > 1:
                problems.append("per-channel mean/std differ; MediaPipe's image preprocessing "
                                "takes one mean/std for all channels")
        elif tin.dtype == "uint8":
            if tin.scale and norm is not None:
                steps = raw_pixel_error(tin.scale, tin.zero_point or 0, norm[0], norm[1])
                if steps > 1.0:
                    problems.append(
                        f"uint8 input gets raw pixels from MediaPipe, but its quantization "
                        f"(scale {tin.scale:.6g}, zero point {tin.zero_point}) is {steps:.1f} "
                        f"steps off (pixel - mean) / std: masks would be wrong")
        if metadata is not None and metadata.input_color_space not in (None, "rgb"):
            problems.append(f"input color space is {metadata.input_color_space} (only RGB)")
    if facts.outputs:
        tout = facts.outputs[-1]
        if len(tout.shape) != 4 or tout.dtype not in ("float32", "uint8"):
            what = f"output {tout.dtype}{list(tout.shape)} is not a 1 x H x W x C float32/uint8 " \
                   f"score tensor"
            fix = ("export with --io-type uint8" if len(tout.shape) == 4 and tout.dtype == "int8"
                   else "export with --output logits")
            tl_only.append(what)
            problems.append(f"{what}: MediaPipe may load it but reads it as scores, so its masks "
                            f"are wrong ({fix})")
    if metadata is None:
        if not any(p.startswith("malformed") for p in problems):
            warnings.append("no standard TFLite metadata (TFLITE_METADATA): no labels, "
                            "activation NONE")
    else:
        if not metadata.labels:
            warnings.append("no TENSOR_AXIS_LABELS file on the output: ImageSegmenter.labels is empty")
        if metadata.activation is None:
            warnings.append("no SEGMENTER_METADATA activation: MediaPipe uses NONE")
    input_problems = [p for p in problems if not p.startswith("output ")]
    tl_problems = tuple(input_problems + tl_only)
    return Compatibility(accepted=not problems, problems=tuple(problems),
                         warnings=tuple(warnings), task_library_accepted=not tl_problems,
                         task_library_problems=tl_problems)
