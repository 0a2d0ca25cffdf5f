"""The .tflite model contract: one public reader/writer of model metadata and what it means.

* :mod:`~edge_deeplab.core.contract.metadata`: reading/embedding the JSON metadata entry of a
  ``.tflite`` flatbuffer (and its ``X.json`` sidecar), validating flatbuffer bytes;
* :mod:`~edge_deeplab.core.contract.semantics`: labels, normalization, output kind, variant and
  person class, answered for every consumer;
* :mod:`~edge_deeplab.core.contract.variants`: the one table of export variants (types, I/O,
  converter path, GPU, contract bounds);
* :mod:`~edge_deeplab.core.contract.tflite_reader`: the read-only flatbuffer reader all of the
  above read models with (``flatbuffers`` only: no TensorFlow, no LiteRT, so it works beside
  ``tflite_runtime`` on boards).
"""

from edge_deeplab.core.contract.metadata import (
                                                 METADATA_NAME,
                                                 SIGNATURE_KEY,
                                                 check_tflite_bytes,
                                                 embed_metadata,
                                                 load_tflite_bytes,
                                                 parse_model,
                                                 read_tflite_metadata,
                                                 sidecar_path,
)
from edge_deeplab.core.contract.semantics import (
                                                 INTEGER_VARIANTS,
                                                 NORM_MEAN,
                                                 NORM_STD,
                                                 OUTPUT_KINDS,
                                                 PERSON_LABELS,
                                                 VARIANTS,
                                                 VOC_CLASSES,
                                                 VOC_PERSON,
                                                 has_normalization,
                                                 labels,
                                                 normalization,
                                                 normalization_dict,
                                                 output_kind,
                                                 person_class,
                                                 read_model_metadata,
                                                 tensor_dtypes,
                                                 variant,
)

__all__ = [
    "METADATA_NAME", "SIGNATURE_KEY", "check_tflite_bytes", "embed_metadata",
    "load_tflite_bytes", "parse_model", "read_tflite_metadata",
    "INTEGER_VARIANTS", "NORM_MEAN", "NORM_STD", "OUTPUT_KINDS", "PERSON_LABELS", "VARIANTS",
    "VOC_CLASSES", "VOC_PERSON", "has_normalization", "labels", "normalization", "normalization_dict",
    "output_kind", "person_class", "read_model_metadata", "sidecar_path", "tensor_dtypes", "variant",
]
