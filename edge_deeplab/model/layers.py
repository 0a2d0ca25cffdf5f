"""Edge-clean atrous depthwise convolution.

Keras' stock ``DepthwiseConv2D(dilation_rate=r)`` calls ``tf.nn.depthwise_conv2d``, which lowers a
dilated convolution to ``SpaceToBatchND -> DepthwiseConv2dNative -> BatchToSpaceND``. The TFLite
converter keeps that shape (SPACE_TO_BATCH_ND, DEPTHWISE_CONV_2D, BATCH_TO_SPACE_ND) and cannot fold
the following BatchNorm through it (it stays as MUL/ADD). The LiteRT GPU delegate supports neither
SPACE_TO_BATCH_ND nor BATCH_TO_SPACE_ND, so a naive DeepLab splits into many CPU/GPU partitions.

``tf.raw_ops.DepthwiseConv2dNative`` accepts ``dilations`` directly, trains on CPU with identical
numbers, and converts to one dilated DEPTHWISE_CONV_2D with BatchNorm folded into it.

We keep the *stock* layer class in every model (so tensorflow-model-optimization recognises it and
applies its Conv+BN handling, and any tf_keras user can load our models) and route the dilated case
of its ``call`` to the native op. The routing is one explicit, reversible patch:

* it only changes layers with ``dilation_rate > 1``, ``strides == 1``, ``padding == 'same'`` and
  channels-last data, whose output is mathematically identical either way;
* it is installed by :func:`native_dilated_depthwise` (a context manager, re-entrant) around every
  trace that matters here: conversion, QAT wrapping/training, Keras training and evaluation.

Caveat: Keras caches traced layer calls when a model is serialized (which the TFLite converter
does). Convert a model that was already converted without the patch through
:func:`convertible_clone`; the exporter does, and verifies the resulting op set.

Example:
    >>> from edge_deeplab.core._tf import keras
    >>> from edge_deeplab.model.layers import native_dilated_depthwise
    >>> with native_dilated_depthwise():
    ...     y = keras.layers.DepthwiseConv2D(3, dilation_rate=2, padding="same")(
    ...         keras.backend.ones((1, 8, 8, 4)))
    >>> tuple(y.shape)
    (1, 8, 8, 4)
"""

from __future__ import annotations

import contextlib
import threading

from edge_deeplab.core._tf import keras, tf

_DepthwiseConv2D = keras.layers.DepthwiseConv2D
_stock_call = _DepthwiseConv2D.call
_lock = threading.RLock()
_depth = 0


def _is_native_dilated(layer) -> bool:
    rate = tuple(layer.dilation_rate)
    return (
        rate != (1, 1)
        and tuple(layer.strides) == (1, 1)
        and layer.padding == "same"
        and layer.data_format in (None, "channels_last")
    )


def _native_dilated_call(self, inputs):
    """``DepthwiseConv2D.call`` with the dilated case lowered to one native op."""
    if not _is_native_dilated(self):
        return _stock_call(self, inputs)
    rh, rw = self.dilation_rate
    outputs = tf.raw_ops.DepthwiseConv2dNative(
        input=inputs,
        filter=self.depthwise_kernel,
        strides=[1, 1, 1, 1],
        padding="SAME",
        data_format="NHWC",
        dilations=[1, rh, rw, 1],
    )
    if self.use_bias:
        outputs = tf.nn.bias_add(outputs, self.bias, data_format="NHWC")
    if self.activation is not None:
        return self.activation(outputs)
    return outputs


@contextlib.contextmanager
def native_dilated_depthwise():
    """Context in which stock dilated ``DepthwiseConv2D`` layers trace to one native op.

    Re-entrant and thread-safe: the stock ``call`` is restored when the outermost context exits.
    Layers traced outside the context (e.g. by a user loading our ``.keras`` file into plain
    tf_keras) still compute the same numbers, just through SpaceToBatchND.
    """
    global _depth
    with _lock:
        if _depth == 0:
            _DepthwiseConv2D.call = _native_dilated_call
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _DepthwiseConv2D.call = _stock_call


def convertible_clone(model):
    """A fresh copy of a plain Keras ``model`` whose layers were never traced, for conversion.

    The TFLite converter serializes the Keras model, and Keras caches each layer's traced call
    functions on the layer objects. A model converted once *without* the patch therefore keeps its
    SpaceToBatchND traces even when converted again inside :func:`native_dilated_depthwise`. Cloning
    (same config, same weights) gives layers with no cached traces; convert the clone inside
    :func:`native_dilated_depthwise` as usual.

    Example:
        >>> with native_dilated_depthwise():                               # doctest: +SKIP
        ...     tflite = tf.lite.TFLiteConverter.from_keras_model(convertible_clone(m)).convert()
    """
    from edge_deeplab.core._tf import keras as _keras

    with native_dilated_depthwise():
        clone = _keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    return clone
