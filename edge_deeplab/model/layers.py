"""Edge-clean atrous depthwise convolution.

Keras' stock ``DepthwiseConv2D(dilation_rate=r)`` calls ``tf.nn.depthwise_conv2d``, which lowers a
dilated convolution to ``SpaceToBatchND -> DepthwiseConv2dNative -> BatchToSpaceND``. The TFLite
converter keeps that shape (SPACE_TO_BATCH_ND, DEPTHWISE_CONV_2D, BATCH_TO_SPACE_ND) and cannot fold
the following BatchNorm through it (it stays as MUL/ADD). The LiteRT GPU delegate supports neither
SPACE_TO_BATCH_ND nor BATCH_TO_SPACE_ND, so a naive DeepLab splits into many CPU/GPU partitions.

``tf.raw_ops.DepthwiseConv2dNative`` accepts ``dilations`` directly and converts to one dilated
DEPTHWISE_CONV_2D with BatchNorm folded into it. **But TensorFlow can only trace that op with
dilations, not run it everywhere**: its dilated kernel exists only in oneDNN. The Eigen CPU kernel
(every CPU where TensorFlow leaves oneDNN off: AVX2-only x86, most ARM, or
``TF_ENABLE_ONEDNN_OPTS=0``) and the CUDA kernel reject it ("Current kernel implementation does
not support dilations"). So the rule of this module is: **trace it for conversion, never execute
it.**

We keep the *stock* layer class in every model (so tensorflow-model-optimization recognises it and
applies its Conv+BN handling, and any tf_keras user can load our models). Training, QAT
fine-tuning and range calibration, evaluation, BN re-estimation and every numerics check run the
stock ``call`` (SpaceToBatchND -> DepthwiseConv2dNative -> BatchToSpaceND), whose numbers are
identical, on every device. Only the exporter's trace routes the dilated case to the native op, in
one explicit, reversible patch:

* it only changes layers with ``dilation_rate > 1``, ``strides == 1``, ``padding == 'same'`` and
  channels-last data, whose output is mathematically identical either way;
* it is installed by :func:`native_dilated_depthwise` (a context manager, re-entrant), which only
  ``converters.export`` enters, around the ``tf.function`` trace it hands to the TFLite converter;
* an eager call inside the context (which would *execute* the op) takes the stock path anyway.

:func:`dilated_native_ops` lists the dilated native ops in a traced function, so tests can prove
that no training or evaluation step contains one.

Caveat: Keras caches traced layer calls when a model is serialized (which the TFLite converter's
SavedModel path does). The exporter converts from a freshly traced concrete function; convert a
model through ``from_keras_model`` only via :func:`convertible_clone`.

Example:
    >>> from edge_deeplab.core._tf import keras
    >>> from edge_deeplab.model.layers import native_dilated_depthwise
    >>> from edge_deeplab.core._tf import tf
    >>> layer = keras.layers.DepthwiseConv2D(3, dilation_rate=2, padding="same")
    >>> with native_dilated_depthwise():
    ...     fn = tf.function(layer).get_concrete_function(tf.TensorSpec((1, 8, 8, 4)))
    >>> dilated_native_ops(fn)
    ['depthwise_conv2d/DepthwiseConv2dNative']
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
    """``DepthwiseConv2D.call`` with the dilated case lowered to one native op (graph traces only).

    Eagerly the op would run at once, and its dilated kernel is missing on most devices, so an
    eager call takes the stock path (same numbers).
    """
    if not _is_native_dilated(self) or tf.executing_eagerly():
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

    For TFLite conversion only: trace inside it, hand the trace to the converter, never execute the
    traced function (its dilated kernel exists only in oneDNN). Re-entrant and thread-safe: the stock
    ``call`` is restored when the outermost context exits.
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


def dilated_native_ops(fn) -> list:
    """Names of the ``DepthwiseConv2dNative`` nodes with dilations > 1 in a traced function.

    Args:
        fn: a ``ConcreteFunction``, a ``tf.Graph`` or a ``GraphDef``; nested functions (the bodies of
            ``tf.distribute`` steps, ``while`` loops, gradients) are searched too.

    Returns:
        Node names, sorted; empty when every dilated depthwise conv takes the stock path, which any
        device can execute.
    """
    graph_def = fn
    if hasattr(fn, "graph"):
        graph_def = fn.graph.as_graph_def()
    elif hasattr(fn, "as_graph_def"):
        graph_def = fn.as_graph_def()

    def bad(node) -> bool:
        if node.op != "DepthwiseConv2dNative" or "dilations" not in node.attr:
            return False
        return any(int(d) != 1 for d in node.attr["dilations"].list.i)

    found = [n.name for n in graph_def.node if bad(n)]
    for f in graph_def.library.function:
        found += [f"{f.signature.name}/{n.name}" for n in f.node_def if bad(n)]
    return sorted(found)
