"""Opening a model for inference: which runner, in which process (:func:`open_runner`).

The runners themselves are in :mod:`~edge_deeplab.runtime.runners` (in-process) and
:mod:`~edge_deeplab.runtime.isolated` (a TF-free child process); this module picks one for an
accelerator and runtime, after the checks every consumer needs (known accelerator, runtime and GPU
precision; a runtime that is installed; a model the GPU runs).

Example:
    >>> r = open_runner("model.tflite", accelerator="cpu", threads=2)  # doctest: +SKIP
    >>> r.input.shape                                                  # doctest: +SKIP
    (1, 513, 513, 3)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from edge_deeplab.core.contract import semantics as contract
from edge_deeplab.core.contract import variants
from edge_deeplab.core.errors import DelegateUnavailableError, EdgeDeeplabError
from edge_deeplab.core.sysinfo import available_runtimes
from edge_deeplab.runtime.isolated import IsolatedRunner
from edge_deeplab.runtime.runners import (
    ACCELERATORS,
    GPU_PRECISIONS,
    RUNTIMES,
    CompiledModelRunner,
    InterpreterRunner,
    Runner,
)


def needs_isolation(accelerator: str, runtime: str) -> bool:
    """Whether a runner must live in a TF-free child process: GPU/NPU on LiteRT with TensorFlow
    loaded here (``EDGE_DEEPLAB_ISOLATE=1`` forces it)."""
    if os.environ.get("EDGE_DEEPLAB_ISOLATE") == "1":
        return True
    return accelerator in ("gpu", "npu") and runtime == "litert" and "tensorflow" in sys.modules


def refuse_gpu_unsupported(path) -> None:
    """Raises :class:`DelegateUnavailableError` for a model of a variant the GPU does not run.

    Which variants: the rows of the table of variants with ``gpu=False``
    (:func:`edge_deeplab.core.contract.variants.gpu_refused_activations`), recognised by their
    activation type in the model's tensors, so a foreign model is caught too. Today that is
    ``w8a16``: the LiteRT GPU accelerator refuses most int16-activation ops but claims a few (ADD,
    CONCATENATION), and that mix computed wrong outputs: 86.6% argmax agreement with the CPU on a
    trained w8a16 model (``tests/contract``). No wrong numbers: such models run on the CPU.
    """
    try:
        dtypes = set(contract.tensor_dtypes(path))
    except Exception:  # noqa: BLE001 - unreadable models fail with their own error later
        return
    for dtype, name in variants.gpu_refused_activations().items():
        if dtype in dtypes:
            raise DelegateUnavailableError(
                f"{Path(path).name} has {dtype} activations ({name}): the LiteRT GPU accelerator does "
                f"not run them and its partial CPU fallback gives wrong outputs; use --accelerator cpu")


def open_runner(path, accelerator: str = "cpu", threads: Optional[int] = None, runtime: str = "auto",
                delegate: Optional[str] = None, allow_fallback: bool = True,
                isolate: Optional[bool] = None, gpu_precision: str = "fp16") -> Runner:
    """Loads ``path`` for inference.

    Args:
        path: a .tflite file.
        accelerator: ``cpu`` (XNNPACK), ``gpu`` (LiteRT GPU accelerator) or ``npu`` (vendor library).
        threads: CPU threads (``None``: the runtime decides).
        runtime: ``auto`` (LiteRT CompiledModel, else tflite_runtime), ``litert``, ``interpreter``
            (LiteRT Interpreter; needed for ``delegate``) or ``tflite_runtime``.
        delegate: path to an external TFLite delegate library (``.so``), Interpreter runtimes only.
        allow_fallback: for gpu/npu, recompile with CPU fallback when some ops are refused
            (``fully_accelerated`` is then False); ``False`` raises instead.
        isolate: run the model in a TF-free child process (:class:`IsolatedRunner`). ``None``
            (default) isolates GPU/NPU automatically when TensorFlow is loaded in this process,
            where the LiteRT GPU accelerator would crash.
        gpu_precision: ``fp16`` (default, as on phones) or ``fp32`` for the LiteRT GPU
            accelerator (see :data:`GPU_PRECISIONS`); ignored on the CPU.

    Raises:
        EdgeDeeplabError: missing/garbage model, unknown accelerator or runtime.
        DelegateUnavailableError: the accelerator or delegate cannot start here.

    Example:
        >>> r = open_runner("model.tflite", accelerator="cpu", threads=2)  # doctest: +SKIP
        >>> logits = r.predict(image)                                      # doctest: +SKIP
    """
    if accelerator not in ACCELERATORS:
        raise EdgeDeeplabError(f"unknown accelerator {accelerator!r}; choose from {', '.join(ACCELERATORS)}")
    if runtime not in RUNTIMES:
        raise EdgeDeeplabError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if gpu_precision not in GPU_PRECISIONS:
        raise EdgeDeeplabError(f"unknown GPU precision {gpu_precision!r}; choose from "
                               f"{', '.join(GPU_PRECISIONS)}")
    have = available_runtimes()
    if runtime == "auto":
        if delegate:
            runtime = "interpreter" if "interpreter" in have else "tflite_runtime"
        else:
            runtime = "litert" if "litert" in have else "tflite_runtime"
    if runtime not in have:
        raise EdgeDeeplabError(f"runtime {runtime} is not installed (have: {', '.join(have) or 'none'})")
    if accelerator == "gpu" and not delegate:
        refuse_gpu_unsupported(path)
    if accelerator == "gpu" and gpu_precision != "fp16" and (runtime != "litert" or delegate):
        raise EdgeDeeplabError(f"--gpu-precision {gpu_precision} sets the LiteRT GPU accelerator "
                               f"(runtime litert, no --delegate), not {runtime}"
                               + (" with a delegate" if delegate else ""))
    if isolate is None:
        isolate = needs_isolation(accelerator, runtime)
    if isolate:
        return IsolatedRunner(path, accelerator, threads=threads, runtime=runtime, delegate=delegate,
                              allow_fallback=allow_fallback, gpu_precision=gpu_precision)
    if runtime == "litert":
        if delegate:
            raise EdgeDeeplabError("--delegate needs --runtime interpreter or tflite_runtime")
        return CompiledModelRunner(path, accelerator, threads=threads, allow_fallback=allow_fallback,
                                   gpu_precision=gpu_precision)
    if accelerator != "cpu" and not delegate:
        raise EdgeDeeplabError(f"runtime {runtime} runs {accelerator} only through --delegate LIB.so")
    return InterpreterRunner(path, runtime=runtime, threads=threads, delegate=delegate, accelerator=accelerator)
