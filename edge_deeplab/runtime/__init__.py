"""Running .tflite segmentation models (LiteRT CompiledModel, Interpreter, tflite_runtime).

* :mod:`~edge_deeplab.runtime.tensors`: :class:`TensorInfo`, :func:`quantize`, :func:`dequantize`;
* :mod:`~edge_deeplab.runtime.opener`: :func:`open_runner` (which runner, in which process);
* :mod:`~edge_deeplab.runtime.runners`: the in-process runners;
* :mod:`~edge_deeplab.runtime.isolated`: :class:`IsolatedRunner` (a TF-free child process;
  :mod:`~edge_deeplab.runtime.serve` is its child side);
* :mod:`~edge_deeplab.runtime.probe`: :func:`probe_accelerator` (in a subprocess).

Example:
    >>> import numpy as np
    >>> from edge_deeplab.runtime import TensorInfo, quantize
    >>> info = TensorInfo("x", (1, 2), np.dtype(np.uint8), scale=1 / 127.5, zero_point=128)
    >>> quantize(np.array([-1.0, 1.0]), info).tolist()
    [0, 255]
"""

from edge_deeplab.core.native_logs import (
                                          capture_native_stderr,
                                          native_error_line,
                                          parse_delegate_log,
)
from edge_deeplab.core.sysinfo import available_runtimes
from edge_deeplab.runtime.isolated import IsolatedRunner
from edge_deeplab.runtime.opener import open_runner
from edge_deeplab.runtime.probe import probe_accelerator
from edge_deeplab.runtime.runners import (
                                          ACCELERATORS,
                                          GPU_PRECISIONS,
                                          RUNTIMES,
                                          CompiledModelRunner,
                                          InterpreterRunner,
                                          Runner,
                                          inspect_model,
)
from edge_deeplab.runtime.tensors import TensorInfo, dequantize, image_to_input, quantize

__all__ = ["ACCELERATORS", "GPU_PRECISIONS", "RUNTIMES", "CompiledModelRunner", "InterpreterRunner", "IsolatedRunner",
           "Runner", "TensorInfo", "available_runtimes", "capture_native_stderr", "dequantize",
           "inspect_model", "native_error_line", "open_runner", "parse_delegate_log",
           "image_to_input", "probe_accelerator", "quantize"]
