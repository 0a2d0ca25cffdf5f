"""The one place TensorFlow is imported.

tensorflow-model-optimization supports only Keras 2, so every model in this toolkit is built with
``tf_keras``. ``TF_USE_LEGACY_KERAS=1`` must be set before TensorFlow is first imported; importing
TF through this module guarantees it. TensorFlow's C++ INFO/WARNING chatter is silenced unless the
user asked for it (``TF_CPP_MIN_LOG_LEVEL``).

oneDNN: TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI/BF16/AMX
class features. On other x86 CPUs (AVX2-only Intel and AMD) they are still correct and train the
quickstart model about 1.4x faster (``benchmarks/README.md``), so on x86 this module turns them on
when the user has not set ``TF_ENABLE_ONEDNN_OPTS`` (never overriding a user's setting). Nothing in
the toolkit depends on it: training, QAT and evaluation run kernels every device has, and the test
suite runs with ``TF_ENABLE_ONEDNN_OPTS=0``.

Example:
    >>> from edge_deeplab.core._tf import tf, keras
    >>> keras.__name__
    'tf_keras'
"""

import os
import platform

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KMP_WARNINGS", "0")

if os.environ["TF_USE_LEGACY_KERAS"] != "1":  # pragma: no cover - guarded misconfiguration
    raise ImportError("edge_deeplab needs TF_USE_LEGACY_KERAS=1 (tf_keras); unset or set it to 1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

tf.get_logger().setLevel("ERROR")

__all__ = ["tf", "keras"]
