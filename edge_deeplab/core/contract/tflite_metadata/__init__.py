"""Standard TFLite model metadata (``TFLITE_METADATA``): what phone SDKs read.

MediaPipe Tasks and the TFLite Task Library load a segmenter as-is only when the model carries
the public metadata flatbuffer (``_schema/metadata_schema.fbs``): input normalization, labels as an
associated file, MediaPipe's ``SEGMENTER_METADATA`` activation. This package writes it
(:func:`write_standard_metadata`), reads it from any model (:func:`read_standard_metadata`) and
says whether those clients will accept a model (:func:`mediapipe_compatibility`). No TensorFlow.

Example:
    >>> from edge_deeplab.core.contract.tflite_metadata import read_standard_metadata
    >>> m = read_standard_metadata("model.tflite")        # doctest: +SKIP
    >>> m.labels, m.normalization(), m.activation          # doctest: +SKIP
"""

from edge_deeplab.core.contract.tflite_metadata._model import METADATA_BUFFER_NAME
from edge_deeplab.core.contract.tflite_metadata.compatibility import (
                                                                      Compatibility,
                                                                      mediapipe_compatibility,
)
from edge_deeplab.core.contract.tflite_metadata.reader import (
                                                                      StandardMetadata,
                                                                      read_standard_metadata,
)
from edge_deeplab.core.contract.tflite_metadata.writer import (
                                                                      CONFIG_FILE,
                                                                      LABELS_FILE,
                                                                      check_labels,
                                                                      write_standard_metadata,
)

__all__ = ["METADATA_BUFFER_NAME", "CONFIG_FILE", "LABELS_FILE", "Compatibility", "StandardMetadata",
           "check_labels", "mediapipe_compatibility", "read_standard_metadata",
           "write_standard_metadata"]
