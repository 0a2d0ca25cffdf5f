"""edge_deeplab: DeepLab v3+ / MobileNet-v2 from Keras to phones.

Train, quantize (QAT), convert to TFLite, prove full mobile-GPU delegation, and measure FPS and
mIoU where the model runs. Importing this package is cheap: TensorFlow is imported lazily through
:mod:`edge_deeplab.core._tf`, which also selects Keras 2 (``tf_keras``) as tfmot requires.
"""

__version__ = "0.1.0"

from edge_deeplab.core.errors import EdgeDeeplabError  # noqa: E402,F401
