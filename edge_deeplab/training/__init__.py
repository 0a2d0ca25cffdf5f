"""Layer 3: the training loop, LR schedules and quantization-aware training. Imports layers 1-2."""
