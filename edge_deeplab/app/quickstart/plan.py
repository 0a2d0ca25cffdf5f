"""What the quickstart makes: its exports, their report names, its steps (data, no behaviour).

Which exports must run whole on the GPU and which get a per-layer error report follows from their
rows in the variants table (:mod:`edge_deeplab.core.contract.variants`), not from a second list.

Example:
    >>> EXPORTS["int8_qat"]
    ('qat-int8', 'int8_qat.tflite')
    >>> GPU_CHECKED, QUANT_REPORTED
    (('tflite_float32', 'tflite_float16', 'int8_ptq', 'int8_qat'), ('int8_ptq', 'int8_qat'))
"""

from edge_deeplab.core.contract import variants

#: report name -> (export variant, file name). Order is the report's order.
EXPORTS = {
    "tflite_float32": ("float32", "float32.tflite"),
    "tflite_float16": ("float16", "float16.tflite"),
    "int8_ptq": ("int8", "int8_ptq.tflite"),
    "int8_qat": ("qat-int8", "int8_qat.tflite"),
    "w8a16": ("w8a16", "w8a16.tflite"),
}
ACCURACY_KEYS = ("keras_float",) + tuple(EXPORTS)
PRETTY = {"keras_float": "Keras float32", "tflite_float32": "TFLite float32",
          "tflite_float16": "TFLite float16", "int8_ptq": "TFLite int8 (post-training)",
          "int8_qat": "TFLite int8 (QAT)", "w8a16": "TFLite w8a16 (int16 activations)"}
#: QAT learning rate as a fraction of the float run's (see the QAT step for the measurements).
QAT_LR_FACTOR = 0.2
STEPS = ("data", "train", "qat", "export", "analyze", "accuracy", "bench", "report", "demo")
#: Written into ``DIR`` before anything else: marks it as a quickstart run this toolkit may resume.
MARKER = ".edge_deeplab_quickstart"
#: The exports whose every op must run on the LiteRT GPU accelerator (where one starts): those
#: whose variant row says the GPU takes it. w8a16 is not among them: its int16 activations are a
#: CPU (XNNPACK/reference kernel) format; its GPU coverage is reported, not required, and it is
#: benchmarked on the CPU only.
GPU_CHECKED = tuple(k for k, (v, _) in EXPORTS.items() if variants.get(v).gpu)
#: Quantized exports that get a per-layer error report against float32.tflite: the int8-activation
#: rows.
QUANT_REPORTED = tuple(k for k, (v, _) in EXPORTS.items() if variants.get(v).activations == "int8")
