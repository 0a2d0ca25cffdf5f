"""The portrait head for phones: a DeepLab's person probability at the decoder's 1/4 resolution.

A DeepLab from :func:`edge_deeplab.model.deeplab.build_model` ends in ``logits`` (C classes at the
decoder's resolution, 1/4 of the input with the decoder) and ``logits_upsample`` (a 4x bilinear
resize to the input size). On a phone that full-resolution resize, and the argmax the app then runs
over C channels, are a large share of the model's time (43% and 29% of a quantized DeepLab's in a
published NNAPI profile). :func:`person_head` cuts the graph before the resize and ends it in the
person probability instead: softmax over the classes and the person channel (or a sigmoid for a
one-class model), shape ``(N, H/4, W/4, 1)``, float in [0, 1]. The app upsamples and refines that
one channel at frame resolution (the demo does; MediaPipe Tasks resizes confidence masks itself).

The transform works on float and quantization-aware (tfmot) models alike: it finds the resize by
its layer name (``logits_upsample``; a QAT model's wrapper is ``quant_logits_upsample``) and reuses
every layer before it, weights shared.

Example:
    >>> from edge_deeplab.model.config import ModelConfig
    >>> from edge_deeplab.model.deeplab import build_model
    >>> m = build_model(ModelConfig(input_size=64, num_classes=3, alpha=0.35,
    ...                             labels=("background", "person", "car")))
    >>> head, info = person_head(m, ["background", "person", "car"])
    >>> tuple(head.output_shape), info["labels"], info["class_index"]
    ((None, 16, 16, 1), ['person'], 1)
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from edge_deeplab.core.contract.semantics import PERSON_LABELS, person_class
from edge_deeplab.core.errors import EdgeDeeplabError

#: ``--head`` choices: the full-resolution C-class logits, or the 1/4-resolution person probability.
HEADS = ("full", "person")
#: The output kind the person head's model declares (its metadata's ``output``).
OUTPUT_KIND = "probabilities"
#: The name of the resize :func:`person_head` cuts off (suffix; QAT wrappers prefix ``quant_``).
UPSAMPLE_LAYER = "logits_upsample"


def person_index(labels: Optional[Sequence[str]], num_classes: int) -> Tuple[int, str]:
    """``(index, label)`` of the person class among ``num_classes`` channels.

    Labels win: one of :data:`~edge_deeplab.core.contract.semantics.PERSON_LABELS` must be among
    them. A model without labels falls back to the contract's rules (class 1 of 2, 15 of VOC's 21).

    Args:
        labels: the model's class names (``None``: unknown).
        num_classes: the model's output channels.

    Raises:
        EdgeDeeplabError: no class is a person (one line naming the labels).

    Example:
        >>> person_index(["background", "person", "ball"], 3)
        (1, 'person')
        >>> person_index(None, 2)
        (1, 'person')
    """
    if num_classes == 1:
        name = labels[-1] if labels else "person"
        return 0, str(name)
    named = bool(labels) and len(labels) == num_classes
    if named and not any(str(n).strip().lower() in PERSON_LABELS for n in labels):
        raise EdgeDeeplabError(
            f"--head person needs a person class, and the model's classes [{', '.join(labels)}] "
            f"have none (a label named one of: {', '.join(PERSON_LABELS)})")
    found = person_class(labels if named else None, num_classes)
    if found is None:
        raise EdgeDeeplabError(
            f"--head person needs a person class, and nothing tells which of the model's "
            f"{num_classes} classes is one; export with --labels naming it")
    i = found[0]
    return i, str(labels[i]) if named else "person"


def _logits_tensor(model):
    ups = [layer for layer in model.layers if layer.name.endswith(UPSAMPLE_LAYER)]
    if len(ups) != 1:
        raise EdgeDeeplabError(
            f"--head person needs a DeepLab built by this toolkit (a final '{UPSAMPLE_LAYER}' "
            f"layer); {model.name} has {len(ups)}")
    return ups[0].input


def person_head(model, labels: Optional[Sequence[str]] = None) -> Tuple[object, dict]:
    """``model`` ending in the person probability at the logits' resolution, and what it is.

    Args:
        model: a ``tf_keras`` DeepLab (float or quantization-aware) from this toolkit.
        labels: its class names (for finding the person class).

    Returns:
        ``(head_model, info)``: a functional model sharing ``model``'s layers, output
        ``(N, h, w, 1)`` float probability; ``info``: ``head`` ("person"), ``labels``
        (``[the person label]``), ``class_index``, ``source_labels``, ``stride`` (input / output
        size) and ``output`` (:data:`OUTPUT_KIND`).

    Raises:
        EdgeDeeplabError: no person class, or not a DeepLab of this toolkit.

    Example:
        >>> head, info = person_head(model, ["background", "person"])  # doctest: +SKIP
        >>> info["stride"]                                               # doctest: +SKIP
        4
    """
    import numpy as np

    from edge_deeplab.core._tf import keras

    logits = _logits_tensor(model)
    c = int(logits.shape[-1])
    index, name = person_index(list(labels) if labels else None, c)
    if c == 1:
        prob = keras.layers.Activation("sigmoid", name="person_probability")(logits)
    else:
        probs = keras.layers.Softmax(axis=-1, name="class_probabilities")(logits)
        # the person channel as a 1x1 convolution with a one-hot kernel: XNNPACK, the GPU delegate
        # and int8 (the one-hot weight quantizes exactly) all run it, unlike a channel SLICE, which
        # XNNPACK leaves to TFLite's reference kernels (a partition split measured slower)
        pick = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name="person_probability")
        prob = pick(probs)
        kernel = np.zeros((1, 1, c, 1), np.float32)
        kernel[0, 0, index, 0] = 1.0
        pick.set_weights([kernel])
    head = keras.Model(model.inputs, prob, name=f"{model.name}_person_head")
    in_h = int(model.input_shape[1])
    out_h = int(head.output_shape[1])
    info = {"head": "person", "labels": [name], "class_index": index,
            "source_labels": [str(x) for x in labels] if labels else None,
            "stride": in_h // out_h if out_h else None, "output": OUTPUT_KIND}
    return head, info
