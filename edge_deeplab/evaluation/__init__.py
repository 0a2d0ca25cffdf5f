"""Layer 4: mIoU of Keras models, .tflite models and predicted-mask folders. Imports layers 1-3."""
