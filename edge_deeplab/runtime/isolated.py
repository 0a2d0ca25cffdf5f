"""A runner living in a TF-free child process (``python -m edge_deeplab.runtime serve``).

:class:`IsolatedRunner` is the parent side; :func:`edge_deeplab.runtime.serve.serve` the child's loop
(pickled messages on stdin/stdout).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_deeplab.core.errors import DelegateUnavailableError, EdgeDeeplabError
from edge_deeplab.runtime.runners import Runner
from edge_deeplab.runtime.tensors import info_from_dict


class IsolatedRunner(Runner):
    """A runner living in a child process (``python -m edge_deeplab.runtime serve``) without TF.

    The LiteRT GPU accelerator (WebGPU over Vulkan) crashes a process that has TensorFlow loaded
    (seen with Mesa lavapipe: both bring their own LLVM). :func:`~edge_deeplab.runtime.opener.open_runner` therefore moves GPU/NPU
    runners into a child automatically whenever ``tensorflow`` is imported. Arrays travel pickled
    through the child's stdin/stdout; a native crash in the child surfaces as a one-line error here,
    never as a dead caller.
    """

    def __init__(self, path, accelerator, threads=None, runtime="litert", delegate=None,
                 allow_fallback=True, gpu_precision="fp16"):
        self.path, self.accelerator = str(path), accelerator
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([sys.executable, "-m", "edge_deeplab.runtime", "serve"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr)
        self._send(("open", dict(path=str(path), accelerator=accelerator, threads=threads,
                                 runtime=runtime, delegate=delegate, allow_fallback=allow_fallback,
                                 gpu_precision=gpu_precision)))
        kind, payload = self._recv()
        if kind == "error":
            self.close()
            cls = DelegateUnavailableError if payload[0] == "DelegateUnavailableError" else EdgeDeeplabError
            raise cls(payload[1])
        d = payload
        super().__init__(path, accelerator, [info_from_dict(t) for t in d["inputs"]],
                         [info_from_dict(t) for t in d["outputs"]])
        self.runtime_name = d["runtime"]
        self.runtime_version = d["runtime_version"]
        self.fully_accelerated = d["fully_accelerated"]
        self.unsupported_ops = d["unsupported_ops"]
        self.gpu_precision = d.get("gpu_precision")
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
