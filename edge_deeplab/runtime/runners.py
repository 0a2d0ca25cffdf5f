"""Running .tflite segmentation models: LiteRT CompiledModel (CPU/GPU/NPU), LiteRT Interpreter with a
user delegate, and ``tflite_runtime`` as a fallback for boards that only have that.

One interface for every consumer (eval, bench, demo, quickstart)::

    r = open_runner("model.tflite", accelerator="gpu")
    r.input, r.output            # TensorInfo: name, NHWC shape, dtype, quantization
    r.fully_accelerated          # True/False (None where the runtime cannot tell)
    r.unsupported_ops            # ops the accelerator refused (they fell back to CPU)
    y = r.run(x)                 # raw tensors in/out; returns only once the output is readable
    logits = r.predict(image)    # uint8 RGB image in, float32 (h, w, C) logits/probs out

Timing honesty: LiteRT's GPU ``run_by_index`` returns before the GPU has finished; :meth:`Runner.run`
always includes reading the output back, so a timed ``run`` is a real end-of-work latency.

Accelerator coverage: the LiteRT GPU accelerator compiled with *GPU only* refuses a model with any op it
cannot run. We first compile GPU-only (success means one GPU partition: ``fully_accelerated=True``);
on refusal we recompile GPU+CPU (unless ``allow_fallback=False``) and report the refused ops, which
LiteRT prints to the native stderr (captured here, never shown to users). :func:`probe_accelerator`
does the same in a subprocess, so a native crash in a driver cannot take the caller down.

This module holds the in-process runners; :mod:`~edge_deeplab.runtime.opener` has :func:`open_runner`
(which runner, where), :mod:`~edge_deeplab.runtime.tensors` the tensor descriptions and quantize math,
:mod:`~edge_deeplab.runtime.isolated` the child-process runner (:mod:`~edge_deeplab.runtime.serve` its
child side) and :mod:`~edge_deeplab.runtime.probe` the accelerator probe.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from edge_deeplab.core.contract import semantics as contract
from edge_deeplab.core.errors import DelegateUnavailableError, EdgeDeeplabError
from edge_deeplab.core.native_logs import (
    capture_native_stderr,
    native_error_line,
    parse_delegate_log,
)
from edge_deeplab.core.sysinfo import available_runtimes, pkg_version
from edge_deeplab.runtime.tensors import (
    TensorInfo,
    dequantize,
    details_to_info,
)

ACCELERATORS = ("cpu", "gpu", "npu")
RUNTIMES = ("auto", "litert", "interpreter", "tflite_runtime")
#: Arithmetic of the LiteRT GPU accelerator. ``fp16``: its default and what phone GPU delegates
#: run (half-precision allowed); ``fp32``: ``GpuOptions(enforce_f32=True)``, full precision at a
#: speed cost. An int8 model on the GPU emulates its quantization in float: in fp16 that
#: emulation rounds some activations into the neighbouring quantization step, so its argmax can
#: differ from the CPU's integer kernels on more pixels than in fp32 (measured on the suite's
#: trained model: 98.9% vs 99.6% of pixels).
GPU_PRECISIONS = ("fp16", "fp32")


def interpreter_class(runtime: str):
    """The Interpreter class of ``ai_edge_litert`` or ``tflite_runtime``, with its load_delegate."""
    if runtime in ("interpreter", "litert"):
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "litert-interpreter", pkg_version("ai-edge-litert")
    from tflite_runtime.interpreter import Interpreter, load_delegate  # type: ignore

    return Interpreter, load_delegate, "tflite_runtime", pkg_version("tflite-runtime")


def inspect_model(path: str | os.PathLike, runtime: str = "auto") -> Tuple[List[TensorInfo], List[TensorInfo]]:
    """Reads a .tflite's inputs/outputs (with quantization) without running it.

    Raises:
        EdgeDeeplabError: the file is missing, empty, truncated or not a TFLite flatbuffer.
    """
    p = Path(path)
    if not p.is_file():
        raise EdgeDeeplabError(f"model not found: {p}")
    if p.stat().st_size == 0:
        raise EdgeDeeplabError(f"model file is empty: {p}")
    rt = "interpreter" if runtime in ("auto", "litert", "interpreter") and "litert" in available_runtimes() else "tflite_runtime"
    try:
        Interpreter, _, _, _ = interpreter_class(rt)
    except ImportError:
        raise EdgeDeeplabError("no TFLite runtime installed (pip install ai-edge-litert or tflite-runtime)") from None
    with capture_native_stderr() as cap:
        try:
            it = Interpreter(model_path=str(p))
            ins = [details_to_info(d) for d in it.get_input_details()]
            outs = [details_to_info(d) for d in it.get_output_details()]
        except (ValueError, RuntimeError) as e:
            err = e
        else:
            err = None
    if err is not None:
        raise EdgeDeeplabError(f"not a valid TFLite model: {p} ({native_error_line(cap.text, err)})")
    return ins, outs


class Runner:
    """Base class: one loaded model on one accelerator. Use :func:`open_runner`."""

    runtime_name = "?"
    runtime_version: Optional[str] = None

    def __init__(self, path: str, accelerator: str, inputs: List[TensorInfo], outputs: List[TensorInfo]):
        self.path = str(path)
        self.accelerator = accelerator
        self.inputs = inputs
        self.outputs = outputs
        self.fully_accelerated: Optional[bool] = None
        self.unsupported_ops: List[str] = []
        self.gpu_precision: Optional[str] = None
        self.log = ""
        self._metadata = _MISSING

    # -- description -------------------------------------------------------------------
    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    @property
    def output(self) -> TensorInfo:
        return self.outputs[0]

    @property
    def metadata(self) -> Optional[dict]:
        if self._metadata is _MISSING:
            self._metadata = contract.read_model_metadata(self.path)
        return self._metadata

    def describe(self) -> dict:
        return {"path": self.path, "accelerator": self.accelerator, "runtime": self.runtime_name,
                "runtime_version": self.runtime_version, "fully_accelerated": self.fully_accelerated,
                "unsupported_ops": list(self.unsupported_ops), "gpu_precision": self.gpu_precision,
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    def check_segmentation_io(self) -> None:
        """Raises a one-line error unless this looks like an image segmentation model."""
        s = self.input.shape
        if len(self.inputs) != 1:
            raise EdgeDeeplabError(
                f"{Path(self.path).name} is not an image segmentation model: it has "
                f"{len(self.inputs)} inputs ({', '.join(str(list(t.shape)) for t in self.inputs)}); "
                f"expected one NHWC image input")
        sig = self.input.signature
        if sig is not None and len(sig) == 4 and any(v < 0 for v in sig[1:3]):
            raise EdgeDeeplabError(
                f"{Path(self.path).name} has a dynamic input shape {list(sig)} (-1: any size); "
                f"convert it with a fixed input size (edge-deeplab build --input-size N)")
        if len(s) != 4 or s[-1] not in (1, 3) or s[1] < 8 or s[2] < 8:
            raise EdgeDeeplabError(
                f"{Path(self.path).name} is not an image segmentation model: input shape {list(s)} "
                "(expected one NHWC image input)")
        o = self.output.shape
        if len(o) not in (3, 4) or o[1] < 2 or o[2] < 2:
            raise EdgeDeeplabError(
                f"{Path(self.path).name} is not an image segmentation model: output shape {list(o)} "
                "(expected per-pixel logits, probabilities or a class map)")

    # -- pre/post-processing -------------------------------------------------------------
    def normalization(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` to apply to 0..255 pixels for this model's input.

        The model contract's answer (:func:`edge_deeplab.core.contract.normalization`): the
        model's metadata when present, else the MobileNet-v2 default.
        """
        return contract.normalization(self.metadata)

    def output_kind(self) -> Optional[str]:
        """``logits``, ``probabilities``, ``classmap`` (from the metadata) or None (unknown)."""
        return contract.output_kind(self.metadata)

    def score_kind(self) -> str:
        """How eval reads the output: ``classes`` (an integer class map: unquantized integer output
        or ``classmap`` metadata), ``probabilities`` (metadata says so) or ``logits``."""
        o, kind = self.output, self.output_kind()
        if (np.issubdtype(o.dtype, np.integer) and not o.quantized) or kind == "classmap":
            return "classes"
        return "probabilities" if kind == "probabilities" else "logits"

    def model_input(self):
        """This model's :class:`~edge_deeplab.runtime.model_input.ModelInput` (the one image-to-input
        path), made once per runner."""
        mi = getattr(self, "_model_input", None)
        if mi is None:
            from edge_deeplab.runtime.model_input import ModelInput

            mi = self._model_input = ModelInput.for_runner(self)
        return mi

    def _forward(self, image: np.ndarray):
        """``(model input, box, dequantized output without the batch axis)`` for one RGB image."""
        mi = self.model_input()
        x, box = mi(image)
        return mi, box, dequantize(self.run(x), self.output)[0]

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Runs one uint8 RGB image through the model, placed by the model's geometry (:meth:`model_input`).

        Returns:
            the dequantized output (float32 ``(h, w, C)`` logits or probabilities, or an integer
            ``(h, w)`` class map): at the model's output resolution for an image at the input size,
            else the image's box resized to the image size.
        """
        mi, box, y = self._forward(image)
        if image.shape[:2] == mi.input_hw:
            return y
        return mi.back_to_image(y, box, image.shape[:2], "nearest" if np.issubdtype(y.dtype, np.integer) else "linear")

    def segment(self, image: np.ndarray) -> np.ndarray:
        """The ``(H, W)`` class map of one uint8 RGB image, exactly as ``eval`` scores it.

        Example:
            >>> open_runner("m_int8.tflite").segment(image).shape == image.shape[:2]   # doctest: +SKIP
            True
        """
        mi, box, y = self._forward(image)
        return mi.to_image(y, box, image.shape[:2], self.score_kind())[1]

    # -- execution -------------------------------------------------------------------------
    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_MISSING = object()


class CompiledModelRunner(Runner):
    """LiteRT ``CompiledModel`` on CPU (XNNPACK), GPU (WebGPU/OpenCL) or NPU."""

    runtime_name = "litert-compiled-model"

    def __init__(self, path, accelerator="cpu", threads=None, allow_fallback=True,
                 gpu_precision="fp16"):
        from ai_edge_litert.compiled_model import (
            CompiledModel,
            CpuOptions,
            GpuOptions,
            HardwareAccelerator,
            Options,
        )

        inputs, outputs = inspect_model(path)
        super().__init__(path, accelerator, inputs, outputs)
        self.runtime_version = pkg_version("ai-edge-litert")
        hw = {"cpu": HardwareAccelerator.CPU, "gpu": HardwareAccelerator.GPU,
              "npu": HardwareAccelerator.NPU}[accelerator]
        cpu = CpuOptions(num_threads=int(threads or 0))
        gpu = None
        if accelerator == "gpu":
            self.gpu_precision = gpu_precision
            gpu = GpuOptions(enforce_f32=gpu_precision == "fp32")

        def compile_with(accel):
            with capture_native_stderr() as cap:
                try:
                    m = CompiledModel.from_file(str(path), options=Options(
                        hardware_accelerators=accel, cpu_options=cpu, gpu_options=gpu))
                    err = None
                except RuntimeError as e:
                    m, err = None, e
            self.log += cap.text
            return m, err, cap.text

        model, err, text = compile_with(hw)
        if accelerator == "npu" and ("NPU accelerator could not be loaded" in text
                                     or "No compiler plugin found" in text):
            # LiteRT silently compiles for CPU when no vendor NPU library is present.
            raise DelegateUnavailableError(
                "NPU accelerator unavailable: no vendor NPU library/compiler plugin is installed "
                "(install e.g. ai-edge-litert-sdk-qualcomm on a device with that NPU)")
        if accelerator == "cpu":
            if err is not None:
                raise EdgeDeeplabError(f"LiteRT cannot compile {Path(path).name}: {native_error_line(text, err)}")
            # On CPU "fully accelerated" means XNNPACK claimed every op (else some run on the
            # reference kernels, e.g. the uint8<->int8 conversions of a uint8-I/O model).
            self.fully_accelerated = bool(model.is_fully_accelerated())
        else:
            parsed = parse_delegate_log(text)
            if err is None:
                self.fully_accelerated = bool(model.is_fully_accelerated())
                self.unsupported_ops = sorted(parsed["unsupported_ops"])
            elif "not accelerated" in str(err) or parsed["unsupported_ops"]:
                self.unsupported_ops = sorted(parsed["unsupported_ops"])
                if not allow_fallback:
                    raise DelegateUnavailableError(
                        f"{accelerator.upper()} accelerator cannot run all of {Path(path).name}: "
                        f"unsupported ops {', '.join(self.unsupported_ops) or '(unreported)'}")
                model, err2, text2 = compile_with(hw | HardwareAccelerator.CPU)
                if err2 is not None:
                    raise DelegateUnavailableError(
                        f"{accelerator.upper()} accelerator could not start: {native_error_line(text2, err2)}")
                self.fully_accelerated = False
            else:
                raise DelegateUnavailableError(
                    f"{accelerator.upper()} accelerator could not start for {Path(path).name}: "
                    f"{native_error_line(text, err)}")
        self._model = model
        with capture_native_stderr() as cap:
            try:
                self._in = model.create_input_buffers(0)
                self._out = model.create_output_buffers(0)
                err = None
            except RuntimeError as e:  # e.g. an unresolved custom op surfaces only here
                err = e
        self.log += cap.text
        if err is not None:
            raise EdgeDeeplabError(f"LiteRT cannot prepare {Path(path).name}: {native_error_line(cap.text, err)}")
        self._out_sizes = [int(np.prod(o.shape)) for o in outputs]

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.run_all([x])[0]

    def run_all(self, xs: Sequence[np.ndarray]) -> List[np.ndarray]:
        for buf, x, info in zip(self._in, xs, self.inputs):
            buf.write(np.ascontiguousarray(x, dtype=info.dtype))
        self._model.run_by_index(0, self._in, self._out)
        # Reading the output waits for the accelerator: timing stops only here.
        return [buf.read(n, info.dtype).reshape(info.shape)
                for buf, n, info in zip(self._out, self._out_sizes, self.outputs)]

    def close(self):
        if getattr(self, "_model", None) is None:
            return
        import gc

        # Freeing the model and its environment destroys the accelerators, which LiteRT logs on
        # the native stderr; keep that out of users' terminals.
        with capture_native_stderr():
            self._in = self._out = None
            self._model.close()
            self._model = None
            gc.collect()

    def __del__(self):  # pragma: no cover - best effort at interpreter shutdown
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


class InterpreterRunner(Runner):
    """The classic TFLite Interpreter (LiteRT's or tflite_runtime's), optionally with a delegate .so."""

    def __init__(self, path, runtime="interpreter", threads=None, delegate=None, accelerator="cpu"):
        try:
            Interpreter, load_delegate, name, version = interpreter_class(runtime)
        except ImportError:
            raise EdgeDeeplabError(f"runtime {runtime} is not installed") from None
        inputs, outputs = inspect_model(path, runtime=runtime)
        super().__init__(path, "delegate" if delegate else accelerator, inputs, outputs)
        self.runtime_name, self.runtime_version = name, version
        delegates = []
        with capture_native_stderr() as cap:
            try:
                if delegate:
                    if not Path(delegate).is_file():
                        raise EdgeDeeplabError(f"delegate library not found: {delegate}")
                    delegates = [load_delegate(str(delegate))]
                self._it = Interpreter(model_path=str(path), num_threads=threads or None,
                                       experimental_delegates=delegates or None)
                self._it.allocate_tensors()
                err = None
            except EdgeDeeplabError:
                raise
            except (ValueError, RuntimeError, OSError) as e:
                err = e
        self.log = cap.text
        if err is not None:
            kind = DelegateUnavailableError if delegate else EdgeDeeplabError
            raise kind(f"{name} cannot load {Path(path).name}: {native_error_line(cap.text, err)}")
        parsed = parse_delegate_log(cap.text)
        self.unsupported_ops = sorted(parsed["unsupported_ops"])
        if delegate:
            self.fully_accelerated = not self.unsupported_ops and not parsed["cpu_ops"]
        else:
            # As the CompiledModel reports on CPU: did the default XNNPACK delegate take every op?
            # (tflite_runtime 2.14's XNNPACK takes no int8 op and not a 5-input CONCATENATION.)
            self.fully_accelerated = xnnpack_runs_whole_graph(self._it)
        self._in_idx = [d["index"] for d in self._it.get_input_details()]
        self._out_idx = [d["index"] for d in self._it.get_output_details()]

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.run_all([x])[0]

    def run_all(self, xs: Sequence[np.ndarray]) -> List[np.ndarray]:
        for idx, x, info in zip(self._in_idx, xs, self.inputs):
            self._it.set_tensor(idx, np.ascontiguousarray(x, dtype=info.dtype))
        self._it.invoke()
        return [self._it.get_tensor(i) for i in self._out_idx]

    def close(self):
        self._it = None


def xnnpack_runs_whole_graph(interpreter) -> Optional[bool]:
    """Whether an allocated Interpreter's default XNNPACK delegate runs the whole graph.

    True when there is exactly one delegate partition, fed only by graph inputs and constants and
    producing every graph output (no op before, between or after it on TFLite's own kernels);
    False otherwise (also when XNNPACK took nothing); None when the interpreter cannot tell.
    """
    try:
        it = interpreter._interpreter  # noqa: SLF001 - node inputs/outputs are only exposed here
        parts = [i for i in range(it.NumNodes()) if it.NodeName(i) == "DELEGATE"]
        if len(parts) != 1:
            return False
        produced = {int(t) for d in interpreter._get_ops_details()  # noqa: SLF001
                    if d["op_name"] != "DELEGATE" for t in d["outputs"]}
        graph_in = {int(d["index"]) for d in interpreter.get_input_details()}
        graph_out = {int(d["index"]) for d in interpreter.get_output_details()}
        ins = {int(t) for t in it.NodeInputs(parts[0])}
        outs = {int(t) for t in it.NodeOutputs(parts[0])}
    except Exception:  # noqa: BLE001 - a runtime without these internals: unknown, not a guess
        return None
    return graph_out <= outs and all(t in graph_in or t not in produced for t in ins)
