"""Which output channel of a segmentation model is "person", and its probability per pixel.

:func:`resolve_person_channel`: ``--person-class`` if given, else the model contract's answer
(:func:`edge_deeplab.core.contract.person_class`: a label named ``person``, human, people or
foreground in the model's metadata, class 1 of a 2-class model, class 15 of a 21-class VOC model),
else class 1 of a class map without labels, or the single channel of a 1-channel sigmoid model.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from edge_deeplab.core.contract import semantics as contract
from edge_deeplab.core.errors import EdgeDeeplabError


@dataclasses.dataclass
class PersonSelector:
    """How to get a person probability out of the model output.

    Attributes:
        mode: ``"softmax"`` (multi-class logits or probabilities), ``"sigmoid"`` (one channel),
            or ``"classmap"`` (integer class map).
        index: the person class (channel) index.
        reason: why this index was chosen (printed by the demo).
        num_classes: channels of the model output (1 for a class map).
    """

    mode: str
    index: int
    reason: str
    num_classes: int


def resolve_person_channel(output_shape: Sequence[int], output_dtype, metadata: Optional[dict] = None,
                           person_class: Optional[int] = None, quantized: bool = False) -> PersonSelector:
    """Decides which output channel means "person".

    Args:
        output_shape: the model output shape, ``(1, h, w, C)`` or ``(1, h, w)`` for a class map.
        output_dtype: the output dtype (integer + no channels/one channel = class map).
        metadata: the model's metadata (``labels``), or None.
        person_class: explicit override (``--person-class``).
        quantized: the output is a quantized score tensor (int8/uint8 with a scale), not a class map.

    Raises:
        EdgeDeeplabError: the override is out of range, or no rule identifies the person class.

    Example:
        >>> import numpy as np
        >>> resolve_person_channel((1, 64, 64, 21), np.float32).index
        15
        >>> resolve_person_channel((1, 64, 64, 5), np.float32,
        ...                        {"labels": ["background", "person", "ball", "box", "cone"]}).index
        1
        >>> resolve_person_channel((1, 64, 64, 1), np.float32).mode
        'sigmoid'
    """
    shape = tuple(int(s) for s in output_shape)
    dtype = np.dtype(output_dtype)
    kind = contract.output_kind(metadata)
    is_int = np.issubdtype(dtype, np.integer)
    if len(shape) == 3 or kind == "classmap" or (is_int and not quantized and len(shape) == 4
                                                  and shape[-1] == 1):
        mode, channels = "classmap", None
    elif len(shape) == 4 and shape[-1] == 1:
        mode, channels = "sigmoid", 1
    elif len(shape) == 4:
        mode, channels = "softmax", shape[-1]
    else:
        raise EdgeDeeplabError(f"cannot read a person mask from output shape {list(shape)}")
    labels = contract.labels(metadata)
    n = channels if channels is not None else (len(labels) if labels else None)
    if person_class is not None:
        pc = int(person_class)
        if pc < 0 or (n is not None and mode != "sigmoid" and pc >= n):
            raise EdgeDeeplabError(
                f"--person-class {pc} is out of range for a model with {n} classes")
        if mode == "sigmoid" and pc != 0:
            raise EdgeDeeplabError(
                f"--person-class {pc} given, but the model has a single (sigmoid) output channel; use 0")
        return PersonSelector(mode, pc, f"--person-class {pc}", n or 1)
    if mode == "sigmoid":
        return PersonSelector(mode, 0, "single-channel sigmoid output", 1)
    found = contract.person_class(labels, n)
    if found is not None:
        i, reason = found
        return PersonSelector(mode, i, reason, n or len(labels))
    if mode == "classmap" and n is None:
        return PersonSelector(mode, 1, "class map without labels: assuming 1 = person "
                                       "(override with --person-class)", 2)
    shown = f" (labels: {', '.join(labels[:8])}{'...' if len(labels) > 8 else ''})" if labels else ""
    raise EdgeDeeplabError(
        f"cannot tell which of the model's {n if n else '?'} classes is a person{shown}; "
        "pass --person-class N")


def _softmax_channel(y: np.ndarray, index: int, kind: Optional[str]) -> np.ndarray:
    """P(class ``index``) from ``(h, w, C)`` logits or probabilities."""
    y = np.asarray(y, np.float32)
    if kind != "logits":
        mn, mx = float(y.min()), float(y.max())
        if kind == "probabilities" or (mn >= -1e-4 and mx <= 1.0 + 1e-4
                                       and abs(float(y[::7, ::7].sum(-1).mean()) - 1.0) < 2e-2):
            return y[..., index]
    m = y.max(-1, keepdims=True)
    e = np.exp(y - m)
    return e[..., index] / e.sum(-1)


def person_probability(output: np.ndarray, selector: PersonSelector,
                       output_kind: Optional[str] = None) -> np.ndarray:
    """The person probability ``(h, w)`` float32 in [0, 1] from one (unbatched) model output.

    Example:
        >>> import numpy as np
        >>> sel = PersonSelector("softmax", 1, "", 2)
        >>> p = person_probability(np.array([[[0.0, 10.0], [10.0, 0.0]]], np.float32), sel)
        >>> (p > 0.5).tolist()
        [[True, False]]
    """
    y = np.asarray(output)
    if selector.mode == "classmap":
        if y.ndim == 3:
            y = y[..., 0]
        return (y == selector.index).astype(np.float32)
    if y.ndim == 2:
        y = y[..., None]
    if selector.mode == "sigmoid":
        y = y[..., 0].astype(np.float32)
        if output_kind == "probabilities" or (output_kind is None and y.min() >= 0 and y.max() <= 1):
            return y
        return (1.0 / (1.0 + np.exp(-np.clip(y, -60, 60)))).astype(np.float32)
    return _softmax_channel(y, selector.index, output_kind)
