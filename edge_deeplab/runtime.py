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

Example:
    >>> import numpy as np
    >>> from edge_deeplab.runtime import TensorInfo, dequantize, quantize
    >>> info = TensorInfo("x", (1, 2), np.dtype(np.uint8), scale=1 / 127.5, zero_point=128)
    >>> quantize(np.array([-1.0, 1.0]), info).tolist()
    [0, 255]
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_deeplab.config import NORM_MEAN, NORM_STD
from edge_deeplab.errors import DelegateUnavailableError, EdgeDeeplabError

ACCELERATORS = ("cpu", "gpu", "npu")
RUNTIMES = ("auto", "litert", "interpreter", "tflite_runtime")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A model input or output."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    scale: Optional[float] = None
    zero_point: Optional[int] = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and np.issubdtype(self.dtype, np.integer)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": np.dtype(self.dtype).name,
                "scale": self.scale, "zero_point": self.zero_point}


# --------------------------------------------------------------------------------------------
# Runtime discovery
# --------------------------------------------------------------------------------------------

def _pkg_version(dist: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001
        return None


def available_runtimes() -> Dict[str, str]:
    """Installed runtimes and their versions, e.g. ``{"litert": "2.3.0"}``."""
    found = {}
    try:
        import ai_edge_litert  # noqa: F401

        v = _pkg_version("ai-edge-litert") or "unknown"
        found["litert"] = v
        found["interpreter"] = v
    except ImportError:
        pass
    try:
        import tflite_runtime  # noqa: F401

        found["tflite_runtime"] = _pkg_version("tflite-runtime") or getattr(tflite_runtime, "__version__", "unknown")
    except ImportError:
        pass
    return found


def _interpreter_class(runtime: str):
    """The Interpreter class of ``ai_edge_litert`` or ``tflite_runtime``, with its load_delegate."""
    if runtime in ("interpreter", "litert"):
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "litert-interpreter", _pkg_version("ai-edge-litert")
    from tflite_runtime.interpreter import Interpreter, load_delegate  # type: ignore

    return Interpreter, load_delegate, "tflite_runtime", _pkg_version("tflite-runtime")


# --------------------------------------------------------------------------------------------
# Native log capture (LiteRT writes delegate reports to fd 2)
# --------------------------------------------------------------------------------------------

class _Captured:
    text = ""


@contextlib.contextmanager
def capture_native_stderr():
    """Redirects the process' fd 2 (native C++ logs included) into a buffer.

    Yields an object whose ``.text`` holds the captured output once the block exits. Set
    ``EDGE_DEEPLAB_SHOW_NATIVE_LOGS=1`` to let the logs through as well.
    """
    cap = _Captured()
    if os.environ.get("EDGE_DEEPLAB_SHOW_NATIVE_LOGS") == "1":
        yield cap
        return
    try:
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield cap
        finally:
            try:
                sys.stderr.flush()
            except Exception:  # noqa: BLE001
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            cap.text = tmp.read().decode("utf-8", "replace")


_UNSUPPORTED_RE = re.compile(r"^([A-Z][A-Z0-9_]+): (.+)$")
_PARTITION_RE = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+) operations? will run on the CPU")


def parse_delegate_log(text: str) -> dict:
    """Parses LiteRT/TFLite GPU delegate reports.

    Returns:
        ``{"unsupported_ops": {OP: reason}, "gpu_ops": int|None, "cpu_ops": int|None}``.
    """
    unsupported: Dict[str, str] = {}
    in_block = False
    for line in text.splitlines():
        line = line.strip()
        if "operations are not supported by" in line:
            in_block = True
            continue
        if in_block:
            m = _UNSUPPORTED_RE.match(line)
            if m:
                unsupported.setdefault(m.group(1), m.group(2))
                continue
            in_block = False
    m = _PARTITION_RE.search(text)
    return {"unsupported_ops": unsupported,
            "gpu_ops": int(m.group(1)) if m else None,
            "cpu_ops": int(m.group(2)) if m else None}


_ERROR_HINTS = (
    # (pattern in the native log, message) - most specific first
    ("No adapters found", "no GPU adapter found (no Vulkan/WebGPU driver; on Debian install "
                          "mesa-vulkan-drivers >= 24 or a vendor GPU driver)"),
    ("Found no drivers", "no Vulkan driver found"),
    ("Failed to initialize WebGPU environment", "WebGPU environment could not be initialized"),
    ("Failed to load OpenCL", None),
)


#: Lines of a native log that name why a model failed to load, prepare or run.
_OP_FAILURE_HINTS = ("unresolved custom op", "failed to prepare", "failed to invoke", "not supported",
                     "Didn't find op", "failed to allocate", "Failed to allocate")


def native_error_line(text: str, exc: BaseException) -> str:
    """The most useful single line explaining a native failure.

    Checks, in order: known driver/accelerator problems (rephrased with a fix), a native log line
    naming the failing op (e.g. the unresolved custom op), then the first line that is not log noise.

    Args:
        text: the native stderr captured around the failing call.
        exc: the exception the runtime raised.
    """
    for pattern, msg in _ERROR_HINTS:
        if msg and pattern in text:
            return msg
    lines = [line.strip().lstrip("\u2514 ").strip() for line in text.splitlines()]
    for hint in _OP_FAILURE_HINTS:
        for line in lines:
            if hint in line and "[./" not in line:
                return line.removeprefix("ERROR: ").strip()
    for line in (str(exc) + "\n" + text).splitlines():
        line = line.strip().lstrip("\u2514 ").strip()
        if not line or line.startswith(("INFO", "I0000", "WARNING", "Warning", "=== ", "third_party")):
            continue
        if line.startswith("ERROR: [") and line.endswith("]"):
            continue
        return line
    return type(exc).__name__


# --------------------------------------------------------------------------------------------
# Pre/post-processing
# --------------------------------------------------------------------------------------------

def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float values -> the tensor's dtype, using its quantization when it has one."""
    if info.quantized:
        q = np.round(x / info.scale + info.zero_point)
        ii = np.iinfo(info.dtype)
        return np.clip(q, ii.min, ii.max).astype(info.dtype)
    return x.astype(info.dtype)


def dequantize(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    """The tensor's values as float32 (integer class maps are returned unchanged)."""
    if info.quantized:
        return ((y.astype(np.float32) - info.zero_point) * info.scale).astype(np.float32)
    return y


# --------------------------------------------------------------------------------------------
# Runners
# --------------------------------------------------------------------------------------------

def _read_metadata(path: str) -> Optional[dict]:
    """The model's metadata dict: standard TFLite metadata preferred, then our JSON / sidecar.

    Standard metadata (``TFLITE_METADATA``: labels, normalization, output kind) overrides the
    same keys of our JSON, so a third-party model that carries it needs no flags. Malformed
    standard metadata is ignored here (``analyze`` reports it); the JSON still applies.
    """
    meta = _read_json_metadata(path)
    try:
        from edge_deeplab.core.contract.tflite_metadata import read_standard_metadata

        std = read_standard_metadata(path)
    except EdgeDeeplabError:
        std = None
    if std is not None:
        meta = {**(meta or {}), **std.to_contract_dict()}
    return meta


def _read_json_metadata(path: str) -> Optional[dict]:
    try:
        from converters.metadata import read_tflite_metadata

        meta = read_tflite_metadata(path)
        if meta:
            return meta
    except EdgeDeeplabError:
        raise
    except Exception:  # noqa: BLE001 - metadata is optional; fall back to the sidecar
        pass
    sidecar = Path(path).with_suffix(".json")
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text())
        except ValueError:
            return None
    return None


def _details_to_info(d: dict) -> TensorInfo:
    q = d.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []))
    zps = np.asarray(q.get("zero_points", []))
    scale = float(scales[0]) if scales.size == 1 else None
    zp = int(zps[0]) if zps.size == 1 else None
    if scale is None and d.get("quantization") and d["quantization"][0]:
        scale, zp = float(d["quantization"][0]), int(d["quantization"][1])
    return TensorInfo(name=d["name"], shape=tuple(int(s) for s in d["shape"]),
                      dtype=np.dtype(d["dtype"]), scale=scale, zero_point=zp)


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
        Interpreter, _, _, _ = _interpreter_class(rt)
    except ImportError:
        raise EdgeDeeplabError("no TFLite runtime installed (pip install ai-edge-litert or tflite-runtime)") from None
    with capture_native_stderr() as cap:
        try:
            it = Interpreter(model_path=str(p))
            ins = [_details_to_info(d) for d in it.get_input_details()]
            outs = [_details_to_info(d) for d in it.get_output_details()]
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
            self._metadata = _read_metadata(self.path)
        return self._metadata

    def describe(self) -> dict:
        return {"path": self.path, "accelerator": self.accelerator, "runtime": self.runtime_name,
                "runtime_version": self.runtime_version, "fully_accelerated": self.fully_accelerated,
                "unsupported_ops": list(self.unsupported_ops),
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    def check_segmentation_io(self) -> None:
        """Raises a one-line error unless this looks like an image segmentation model."""
        s = self.input.shape
        if len(self.inputs) != 1 or len(s) != 4 or s[-1] not in (1, 3) or s[1] < 8 or s[2] < 8:
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

        From the model's metadata when present (``normalize_in_graph`` means raw pixels), else the
        MobileNet-v2 default ``(127.5, 127.5)``.
        """
        meta = self.metadata or {}
        if meta.get("normalize_in_graph"):
            return np.zeros(3, np.float32), np.ones(3, np.float32)
        norm = meta.get("normalization") or {}
        mean = np.asarray(norm.get("mean", NORM_MEAN), np.float32)
        std = np.asarray(norm.get("std", NORM_STD), np.float32)
        return mean, std

    def prepare_input(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB image already at the model's input size -> the input tensor (batch of 1).

        A uint8 input whose quantization absorbs ``(pixel - mean) / std`` (to within one step) gets
        the raw pixels, as MediaPipe Tasks, the Task Library and phone apps feed it; requantizing
        the normalized value would land half a step off (``p + 0.5`` rounds to even).

        Float inputs get ``pixel * (1/std) + (-mean/std)`` in float32, the form MediaPipe's
        preprocessing (and the in-graph normalization layer) computes: with mean 127.5 every
        normalized pixel sits on a rounding tie of an int8 model's input QUANTIZE, so one ulp of
        difference from ``(pixel - mean) / std`` changes the quantized input.
        """
        mean, std = self.normalization()
        info = self.input
        if info.quantized and np.dtype(info.dtype) == np.uint8 and image.dtype == np.uint8:
            from edge_deeplab.core.contract.tflite_metadata.compatibility import raw_pixel_error

            if raw_pixel_error(info.scale, info.zero_point or 0, mean, std) <= 1.0:
                return np.ascontiguousarray(image[None])
        inv = (1.0 / np.asarray(std, np.float32)).astype(np.float32)
        x = image.astype(np.float32) * inv + (-np.asarray(mean, np.float32) * inv).astype(np.float32)
        return quantize(x[None], info)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Runs one uint8 RGB image (any size; stretched to the model input) through the model.

        Returns:
            float32 ``(h, w, C)`` logits or probabilities at the model's output resolution, or an
            integer ``(h, w)`` class map for models that output one.
        """
        h, w = self.input.shape[1:3]
        if image.ndim != 3 or image.shape[2] != 3:
            raise EdgeDeeplabError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        if image.shape[:2] != (h, w):
            import cv2

            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        y = self.run(self.prepare_input(image))
        y = dequantize(y, self.output)[0]
        return y

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

    def __init__(self, path, accelerator="cpu", threads=None, allow_fallback=True):
        from ai_edge_litert.compiled_model import (CompiledModel, CpuOptions, HardwareAccelerator,
                                                   Options)

        inputs, outputs = inspect_model(path)
        super().__init__(path, accelerator, inputs, outputs)
        self.runtime_version = _pkg_version("ai-edge-litert")
        hw = {"cpu": HardwareAccelerator.CPU, "gpu": HardwareAccelerator.GPU,
              "npu": HardwareAccelerator.NPU}[accelerator]
        cpu = CpuOptions(num_threads=int(threads or 0))

        def compile_with(accel):
            with capture_native_stderr() as cap:
                try:
                    m = CompiledModel.from_file(str(path), options=Options(hardware_accelerators=accel, cpu_options=cpu))
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
            Interpreter, load_delegate, name, version = _interpreter_class(runtime)
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
            self.fully_accelerated = True
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


class IsolatedRunner(Runner):
    """A runner living in a child process (``python -m edge_deeplab.runtime serve``) without TF.

    The LiteRT GPU accelerator (WebGPU over Vulkan) crashes a process that has TensorFlow loaded
    (seen with Mesa lavapipe: both bring their own LLVM). :func:`open_runner` therefore moves GPU/NPU
    runners into a child automatically whenever ``tensorflow`` is imported. Arrays travel pickled
    through the child's stdin/stdout; a native crash in the child surfaces as a one-line error here,
    never as a dead caller.
    """

    def __init__(self, path, accelerator, threads=None, runtime="litert", delegate=None,
                 allow_fallback=True):
        self.path, self.accelerator = str(path), accelerator
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([sys.executable, "-m", "edge_deeplab.runtime", "serve"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr)
        self._send(("open", dict(path=str(path), accelerator=accelerator, threads=threads,
                                 runtime=runtime, delegate=delegate, allow_fallback=allow_fallback)))
        kind, payload = self._recv()
        if kind == "error":
            self.close()
            cls = DelegateUnavailableError if payload[0] == "DelegateUnavailableError" else EdgeDeeplabError
            raise cls(payload[1])
        d = payload
        super().__init__(path, accelerator, [TensorInfo(**_info_args(t)) for t in d["inputs"]],
                         [TensorInfo(**_info_args(t)) for t in d["outputs"]])
        self.runtime_name = d["runtime"]
        self.runtime_version = d["runtime_version"]
        self.fully_accelerated = d["fully_accelerated"]
        self.unsupported_ops = d["unsupported_ops"]
        self.log = d.get("log", "")
        self.isolated = True

    def _send(self, msg):
        import pickle

        try:
            pickle.dump(msg, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._died()

    def _recv(self):
        import pickle

        try:
            return pickle.load(self._proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            self._died()

    def _died(self):
        self._proc.wait(10)
        code = self._proc.returncode
        why = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
        raise EdgeDeeplabError(f"{self.accelerator} worker process died ({why}) running "
                               f"{Path(self.path).name}")

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.run_all([x])[0]

    def run_all(self, xs):
        self._send(("run", [np.ascontiguousarray(x) for x in xs]))
        kind, payload = self._recv()
        if kind == "error":
            raise EdgeDeeplabError(payload[1])
        return payload

    def close(self):
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        self._proc = None
        try:
            import pickle

            pickle.dump(("close", None), proc.stdin)
            proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._stderr.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _info_args(t: dict) -> dict:
    return dict(name=t["name"], shape=tuple(t["shape"]), dtype=np.dtype(t["dtype"]),
                scale=t["scale"], zero_point=t["zero_point"])


def _serve() -> None:
    """Child side of :class:`IsolatedRunner`: one runner, pickled messages on stdin/stdout."""
    import pickle

    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything native code prints to stdout must not corrupt the protocol
    proto_in = sys.stdin.buffer
    runner = None
    while True:
        try:
            cmd, arg = pickle.load(proto_in)
        except (EOFError, OSError, pickle.UnpicklingError):
            break
        if cmd == "close":
            break
        try:
            if cmd == "open":
                runner = open_runner(isolate=False, **arg)
                d = runner.describe()
                d["log"] = runner.log
                reply = ("ok", d)
            else:
                reply = ("ok", runner.run_all(arg))
        except EdgeDeeplabError as e:
            reply = ("error", (type(e).__name__, str(e)))
        except Exception as e:  # noqa: BLE001 - reported to the parent as one line
            reply = ("error", (type(e).__name__, f"inference failed: {type(e).__name__}: {e}"))
        pickle.dump(reply, proto_out, protocol=pickle.HIGHEST_PROTOCOL)
        proto_out.flush()
    proto_out.flush()
    os._exit(0)  # skip native teardown of the accelerator


def _needs_isolation(accelerator: str, runtime: str) -> bool:
    if os.environ.get("EDGE_DEEPLAB_ISOLATE") == "1":
        return True
    return accelerator in ("gpu", "npu") and runtime == "litert" and "tensorflow" in sys.modules


def open_runner(path, accelerator: str = "cpu", threads: Optional[int] = None, runtime: str = "auto",
                delegate: Optional[str] = None, allow_fallback: bool = True,
                isolate: Optional[bool] = None) -> Runner:
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
    have = available_runtimes()
    if runtime == "auto":
        if delegate:
            runtime = "interpreter" if "interpreter" in have else "tflite_runtime"
        else:
            runtime = "litert" if "litert" in have else "tflite_runtime"
    if runtime not in have:
        raise EdgeDeeplabError(f"runtime {runtime} is not installed (have: {', '.join(have) or 'none'})")
    if isolate is None:
        isolate = _needs_isolation(accelerator, runtime)
    if isolate:
        return IsolatedRunner(path, accelerator, threads=threads, runtime=runtime, delegate=delegate,
                              allow_fallback=allow_fallback)
    if runtime == "litert":
        if delegate:
            raise EdgeDeeplabError("--delegate needs --runtime interpreter or tflite_runtime")
        return CompiledModelRunner(path, accelerator, threads=threads, allow_fallback=allow_fallback)
    if accelerator != "cpu" and not delegate:
        raise EdgeDeeplabError(f"runtime {runtime} runs {accelerator} only through --delegate LIB.so")
    return InterpreterRunner(path, runtime=runtime, threads=threads, delegate=delegate, accelerator=accelerator)


# --------------------------------------------------------------------------------------------
# Isolated accelerator probe
# --------------------------------------------------------------------------------------------

def probe_accelerator(path, accelerator: str = "gpu", timeout: float = 600, run: bool = False) -> dict:
    """Checks, in a subprocess, whether ``accelerator`` runs all of ``path``.

    Args:
        path: a .tflite file.
        accelerator: ``gpu`` or ``npu``.
        timeout: seconds before the probe is abandoned.
        run: also run one inference (catches run-time kernel failures, costs a forward pass).

    Returns:
        ``{"available": bool, "fully_accelerated": bool|None, "unsupported_ops": [...],
        "gpu_ops": int|None, "cpu_ops": int|None, "error": str|None}``. ``available`` is False when
        the accelerator itself cannot start here (no driver, no vendor library, crash).
    """
    cmd = [sys.executable, "-m", "edge_deeplab.runtime", "probe", str(path), accelerator]
    if run:
        cmd.append("--run")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"available": False, "fully_accelerated": None, "unsupported_ops": [],
                "error": f"{accelerator} probe timed out after {timeout:.0f}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sig = -proc.returncode if proc.returncode < 0 else None
    return {"available": False, "fully_accelerated": None, "unsupported_ops": [],
            "error": f"{accelerator} probe crashed" + (f" (signal {sig})" if sig else f" (exit {proc.returncode})")}


def _probe_main(path: str, accelerator: str, do_run: bool) -> dict:
    res = {"available": True, "fully_accelerated": None, "unsupported_ops": [], "gpu_ops": None,
           "cpu_ops": None, "error": None}
    try:
        r = open_runner(path, accelerator=accelerator, runtime="litert", allow_fallback=True)
    except DelegateUnavailableError as e:
        res.update(available=False, error=str(e))
        return res
    except EdgeDeeplabError as e:
        res.update(available=True, error=str(e))
        return res
    parsed = parse_delegate_log(r.log)
    res.update(fully_accelerated=r.fully_accelerated, unsupported_ops=r.unsupported_ops,
               gpu_ops=parsed["gpu_ops"], cpu_ops=parsed["cpu_ops"])
    if do_run:
        x = np.zeros(r.input.shape, r.input.dtype)
        with capture_native_stderr():
            r.run(x)
    r.close()
    return res


if __name__ == "__main__":  # python -m edge_deeplab.runtime {probe PATH gpu [--run] | serve}
    if len(sys.argv) == 2 and sys.argv[1] == "serve":
        _serve()
    if len(sys.argv) >= 4 and sys.argv[1] == "probe":
        print(json.dumps(_probe_main(sys.argv[2], sys.argv[3], "--run" in sys.argv[4:])))
        sys.stdout.flush()
        os._exit(0)  # skip native destructors (a flaky driver teardown must not change the answer)
    print("usage: python -m edge_deeplab.runtime probe MODEL.tflite {gpu,npu} [--run]", file=sys.stderr)
    sys.exit(2)
