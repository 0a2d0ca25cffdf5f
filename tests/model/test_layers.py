"""The atrous-depthwise rule: the native dilated op is traced for conversion, never executed.

TensorFlow's dilated ``DepthwiseConv2dNative`` kernel exists only in oneDNN; the Eigen CPU kernel
(``TF_ENABLE_ONEDNN_OPTS=0``, AVX2-only x86, ARM) and the CUDA kernel reject it. These tests inspect
the traced training, QAT and evaluation steps, so the rule holds without a GPU, and prove the
exporter's trace does use the native op (the scanner can see it).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from edge_deeplab.core._tf import keras, tf
from edge_deeplab.model.config import ModelConfig
from edge_deeplab.model.layers import dilated_native_ops, native_dilated_depthwise

pytestmark = pytest.mark.kernels

# output stride 8 at 32x32: the backbone's last blocks and ASPP run dilated (rates 2, 4 and 12/24/36)
DILATED = ModelConfig(input_size=32, num_classes=3, alpha=0.35, output_stride=8,
                      aspp_filters=16, decoder_filters=16)


@pytest.fixture(scope="module")
def model():
    from tests.support.tiny import seeded_model

    m = seeded_model(DILATED)
    assert any(isinstance(l, keras.layers.DepthwiseConv2D) and tuple(l.dilation_rate) != (1, 1)
               for l in m.layers), "the test model must have dilated depthwise convs"
    return m


def _batch(n=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 3, (n, 32, 32)).astype(np.int32)
    return x, y


def test_scanner_sees_the_native_op_in_the_conversion_trace(model):
    """Positive control: the exporter's trace routes every dilated depthwise conv to the native op."""
    spec = tf.TensorSpec((1, 32, 32, 3), tf.float32)
    with native_dilated_depthwise():
        traced = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    n_dilated = sum(isinstance(l, keras.layers.DepthwiseConv2D) and tuple(l.dilation_rate) != (1, 1)
                    for l in model.layers)
    assert len(dilated_native_ops(traced)) == n_dilated
    stock = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    assert dilated_native_ops(stock) == []


def test_training_step_traces_no_dilated_native_op(model):
    from edge_deeplab.training.train import make_train_step

    strategy = tf.distribute.get_strategy()
    opt = keras.optimizers.Adam(1e-3)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    x, y = _batch()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(2).repeat()
    it = iter(strategy.experimental_distribute_dataset(data))
    step = make_train_step(model, opt, strategy, step_var, weight_decay=1e-4)
    assert dilated_native_ops(step.get_concrete_function(it)) == []
    loss = float(step(it))  # and it executes here, whatever this machine's kernels are
    assert np.isfinite(loss) and int(step_var.numpy()) == 1


def test_evaluation_step_traces_no_dilated_native_op(model):
    from edge_deeplab.training.train import make_predict_step

    predict = make_predict_step(model)
    x, _ = _batch()
    assert dilated_native_ops(predict.get_concrete_function(tf.constant(x))) == []
    assert predict(x).numpy().shape == (2, 32, 32)


def test_eager_call_inside_the_context_takes_the_stock_path(model):
    """The context only changes traces: an eager call (which would execute the op) stays stock."""
    x, _ = _batch(1)
    ref = model(x, training=False).numpy()
    with native_dilated_depthwise():
        got = model(x, training=False).numpy()
    np.testing.assert_array_equal(got, ref)


_RUN_NATIVE = r"""
import os, sys
from edge_deeplab.core._tf import keras, tf
from edge_deeplab.core.errors import explain_missing_kernel
from edge_deeplab.model.layers import native_dilated_depthwise
layer = keras.layers.DepthwiseConv2D(3, dilation_rate=2, padding="same", name="aspp_rate6_dw")
inp = keras.Input((16, 16, 4))
m = keras.Model(inp, layer(inp))
with native_dilated_depthwise():
    f = tf.function(lambda x: m(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, 16, 16, 4), tf.float32))
try:
    f(tf.ones((1, 16, 16, 4)))
except Exception as e:
    print("ERROR:", explain_missing_kernel(e))
else:
    print("RAN")
"""


def test_executing_the_native_op_without_onednn_gives_one_clear_line(tmp_path):
    """What users hit if they execute a conversion trace on the Eigen kernel: one line, the layer."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0")
    out = subprocess.run([sys.executable, "-c", _RUN_NATIVE], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("ERROR: layer 'aspp_rate6_dw' ran a dilated DepthwiseConv2dNative"), line
    assert "oneDNN" in line and "native_dilated_depthwise" in line
