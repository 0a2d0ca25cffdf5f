"""Layer 1, the foundation: errors, atomic I/O, native-log handling, imaging, machine info, the one TensorFlow import (_tf) and the .tflite model contract (contract/). Imports nothing above it."""
