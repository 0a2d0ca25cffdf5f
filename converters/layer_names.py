"""TFLite tensor names -> the Keras layers they came from.

The converter names each op's output after the TF ops it absorbed; the Keras layer names inside
those names are how selective precision (:mod:`converters.litert_quant`), the per-layer error
report (:mod:`converters.quant_report`) and the float-layer list of :mod:`converters.analyze`
name layers.

Example:
    >>> primary_layer("m/b1_relu/Relu6;m/b1_BN/FusedBatchNormV3;m/b1/Conv2D1")
    'b1'
"""

from __future__ import annotations

from typing import List, Optional


def keras_layers(tensor_name: str) -> List[str]:
    """Keras layer names recorded in a TFLite tensor name, most specific (the op's own) first.

    The converter names a fused op's output after every TF op it absorbed, ``;``-separated, each as
    ``<model>/<layer>/<tf op>``; e.g. ``m/block_1_expand_relu/Relu6;m/block_1_expand_BN/Fused
    BatchNormV3;m/block_1_expand/Conv2D1`` is the ``block_1_expand`` conv with its BN and ReLU6.
    The last part is the op that carries the weights, so its layer comes first.

    Example:
        >>> keras_layers("m/b1_relu/Relu6;m/b1_BN/FusedBatchNormV3;m/b1/Conv2D1")
        ['b1', 'b1_BN', 'b1_relu']
        >>> keras_layers("m/block_4_add/add_dequant")
        ['block_4_add']
        >>> keras_layers("logits")
        []
    """
    out: List[str] = []
    for part in reversed([p for p in str(tensor_name).split(";") if p]):
        bits = part.split("/")
        if len(bits) < 3:  # a bare name ("logits": the renamed output) or "<scope>/<op>"
            continue
        name = bits[1]
        if name and name not in out:
            out.append(name)
    return out


def primary_layer(tensor_name: str) -> Optional[str]:
    """The Keras layer an op output belongs to (the weight-carrying one for fused ops), or None."""
    layers = keras_layers(tensor_name)
    return layers[0] if layers else None
