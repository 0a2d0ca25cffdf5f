"""Benchmarks on Android devices through ``adb`` and the official TFLite ``benchmark_model`` binary.

For each device (in parallel, one thread per device) and each model x accelerator this pushes the
model and the user's ``benchmark_model`` to ``/data/local/tmp``, runs it with the matching flags
(``--use_gpu``, ``--use_nnapi``, ``--num_threads``, ``--warmup_runs``, ``--num_runs``), and parses its
summary into the same result schema as the local harness (:mod:`benchmarks.harness`), with the
device model, SoC and Android version recorded.

``benchmark_model`` prints mean/std/min/max of the timed runs (and p5/median/p95 in newer builds);
it does not print p90/p99, so those stay ``None`` unless the binary reports them.

Example:
    >>> from benchmarks.adb import parse_benchmark_model_output
    >>> r = parse_benchmark_model_output(
    ...     "count=50 first=1 curr=2 min=90 max=110 avg=100 std=5\\n"
    ...     "Inference timings in us: Init: 2000, First inference: 150, Warmup (avg): 120, Inference (avg): 100\\n")
    >>> r["latency_ms"]["mean"], r["init_ms"]
    (0.1, 2.0)
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from edge_deeplab.core.errors import EdgeDeeplabError

REMOTE_DIR = "/data/local/tmp"
#: getprop keys recorded per device.
DEVICE_PROPS = {
    "model": "ro.product.model",
    "manufacturer": "ro.product.manufacturer",
    "soc_model": "ro.soc.model",
    "board_platform": "ro.board.platform",
    "hardware": "ro.hardware",
    "android_version": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "abi": "ro.product.cpu.abi",
}

# Lines may carry a logcat prefix ("05-30 15:16:44.857  3380  3380 I tflite  : ") or "INFO: ".
_PREFIX_RE = re.compile(r"^(?:\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+\S+\s*:\s?)?"
                        r"(?:(?:INFO|VERBOSE|WARNING|ERROR):\s*)?")
_STAT_RE = re.compile(r"^count=(\d+)\b(.*)$")
_KV_RE = re.compile(r"(\w+)=([-+0-9.eE]+)")
_SUMMARY_RE = re.compile(
    r"Inference timings in us: Init: ([-+0-9.eE]+), First inference: ([-+0-9.eE]+), "
    r"Warmup \(avg\): ([-+0-9.eE]+), Inference \(avg\): ([-+0-9.eE]+)")
_INIT_SESSION_RE = re.compile(r"Initialized session in ([0-9.eE+-]+)\s*ms")
_SIZE_RE = re.compile(r"The input model file size \(MB\): ([0-9.eE+-]+)")
_PEAK_RE = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: ([0-9.eE+-]+)")
_FOOTPRINT_RE = re.compile(r"(?:Peak memory footprint|Memory footprint delta from the start of the tool) "
                           r"\(MB\): init=([0-9.eE+-]+) overall=([0-9.eE+-]+)")
_REPLACING_RE = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \((\w+)\) node, "
                           r"yielding (\d+) partitions")
_UNSUPPORTED_RE = re.compile(r"^([A-Z][A-Z0-9_]+): (.+)$")
_RUN_ON_GPU_RE = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+)")


def _strip(line: str) -> str:
    return _PREFIX_RE.sub("", line.rstrip("\r\n"), count=1).strip()


def parse_benchmark_model_output(text: str) -> dict:
    """Parses the text printed by TFLite's ``benchmark_model`` (stdout, or logcat of the APK).

    Returns:
        A partial result dict in the harness schema: ``latency_ms`` (``mean``, ``std``, ``min``,
        ``max``, ``p50``, ``p90``, ``p99``; None where not printed), ``fps``, ``init_ms``,
        ``first_inference_ms``, ``warmup_ms``, ``runs``, ``peak_rss_mb`` (the tool's peak memory
        footprint), ``model_size_mb``, ``fully_accelerated`` (True/False/None), ``unsupported_ops``,
        ``delegate_kernels``, ``ok`` and ``error`` (the failure line when the run failed).
    """
    lines = [_strip(x) for x in text.splitlines()]
    stats: List[dict] = []
    res: dict = {"latency_ms": {k: None for k in ("mean", "std", "min", "max", "p50", "p90", "p99")},
                 "fps": None, "init_ms": None, "first_inference_ms": None, "warmup_ms": None, "runs": None,
                 "peak_rss_mb": None, "model_size_mb": None, "fully_accelerated": None,
                 "unsupported_ops": [], "delegate_kernels": None, "ok": False, "error": None}
    unsupported: Dict[str, str] = {}
    in_unsupported = False
    summary = None
    for line in lines:
        if not line:
            continue
        if "operations are not supported by" in line:
            in_unsupported = True
            continue
        if in_unsupported:
            m = _UNSUPPORTED_RE.match(line)
            if m and not line.startswith(("INFO", "ERROR")):
                unsupported.setdefault(m.group(1), m.group(2))
                continue
            in_unsupported = False
        m = _STAT_RE.match(line)
        if m:
            d = {k: float(v) for k, v in _KV_RE.findall(line)}
            stats.append(d)
            continue
        m = _SUMMARY_RE.search(line)
        if m:
            summary = [float(g) for g in m.groups()]
            continue
        m = _INIT_SESSION_RE.search(line)
        if m and res["init_ms"] is None:
            res["init_ms"] = float(m.group(1))
        m = _SIZE_RE.search(line)
        if m:
            res["model_size_mb"] = float(m.group(1))
        m = _PEAK_RE.search(line)
        if m:
            res["peak_rss_mb"] = float(m.group(1))
        m = _FOOTPRINT_RE.search(line)
        if m and res["peak_rss_mb"] is None:
            res["peak_rss_mb"] = float(m.group(2))
        if "will be completely executed by the delegate" in line:
            res["fully_accelerated"] = True
        m = re.search(r"partially executed by the delegate w/ (\d+) delegate kernels", line)
        if m:
            res["fully_accelerated"] = False
            res["delegate_kernels"] = int(m.group(1))
        if "will not be executed by the delegate" in line:
            res["fully_accelerated"] = False
            res["delegate_kernels"] = 0
        m = _REPLACING_RE.search(line)
        if m and m.group(3) not in ("TfLiteXNNPackDelegate",):
            replaced, total, parts = int(m.group(1)), m.group(2), int(m.group(4))
            full = parts == 1 and (total is None or int(total) == replaced)
            res["fully_accelerated"] = full if res["fully_accelerated"] is None else res["fully_accelerated"] and full
        m = _RUN_ON_GPU_RE.search(line)
        if m and int(m.group(2)) > 0:
            res["fully_accelerated"] = False
        if line.startswith("Failed to apply") or (res["error"] is None and (
                "failed to prepare" in line or "failed to invoke" in line
                or line.startswith(("Failed to", "Error: ", "Benchmarking failed")))):
            if not (res["error"] or "").startswith("Failed to apply"):
                res["error"] = line
    res["unsupported_ops"] = sorted(unsupported)
    if unsupported:
        res["fully_accelerated"] = False
    timed = stats[-1] if stats else None
    if timed is not None and len(stats) >= 2 or (timed is not None and summary is not None):
        us = 1e-3
        lat = res["latency_ms"]
        lat["mean"] = timed.get("avg", 0) * us if "avg" in timed else None
        lat["std"] = timed["std"] * us if "std" in timed else None
        lat["min"] = timed["min"] * us if "min" in timed else None
        lat["max"] = timed["max"] * us if "max" in timed else None
        for src, dst in (("median", "p50"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99")):
            if src in timed:
                lat[dst] = timed[src] * us
        res["runs"] = int(timed.get("count", 0)) or None
    if summary is not None:
        init_us, first_us, warm_us, inf_us = summary
        res["init_ms"] = init_us / 1000.0
        res["first_inference_ms"] = first_us / 1000.0
        res["warmup_ms"] = warm_us / 1000.0
        if res["latency_ms"]["mean"] is None:
            res["latency_ms"]["mean"] = inf_us / 1000.0
    res["latency_ms"] = {k: (round(v, 4) if v is not None else None) for k, v in res["latency_ms"].items()}
    mean = res["latency_ms"]["mean"]
    if mean:
        res["fps"] = 1000.0 / mean
        res["ok"] = res["error"] is None or summary is not None
    if res["ok"]:
        res["error"] = None
    elif res["error"] is None:
        res["error"] = "benchmark_model printed no timing summary"
    return res


# --------------------------------------------------------------------------------------------
# adb plumbing
# --------------------------------------------------------------------------------------------

def find_adb(adb: Optional[str] = None) -> str:
    """The adb executable: ``adb`` argument, ``$ADB``, or ``adb`` on PATH."""
    cand = adb or os.environ.get("ADB") or shutil.which("adb")
    if not cand or not (Path(cand).is_file() or shutil.which(cand)):
        raise EdgeDeeplabError("adb not found (install Android platform-tools or set $ADB)")
    return cand


class Adb:
    """Runs ``adb [-s SERIAL] ...`` commands; every call raises a one-line error on failure."""

    def __init__(self, serial: Optional[str] = None, adb: Optional[str] = None, timeout: float = 600):
        self.adb = find_adb(adb)
        self.serial = serial
        self.timeout = timeout

    def _cmd(self, *args: str) -> List[str]:
        base = [self.adb] + (["-s", self.serial] if self.serial else [])
        return base + list(args)

    def call(self, *args: str, check: bool = True, timeout: Optional[float] = None) -> str:
        try:
            p = subprocess.run(self._cmd(*args), capture_output=True, text=True,
                               timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            raise EdgeDeeplabError(f"adb {' '.join(args[:2])} timed out on {self.serial or 'device'}") from None
        out = (p.stdout or "") + (p.stderr or "")
        if check and p.returncode != 0:
            last = next((x for x in reversed(out.strip().splitlines()) if x.strip()), f"exit {p.returncode}")
            raise EdgeDeeplabError(f"adb {args[0]} failed on {self.serial or 'device'}: {last.strip()}")
        return out

    def shell(self, command: str, check: bool = True, timeout: Optional[float] = None) -> str:
        return self.call("shell", command, check=check, timeout=timeout)

    def getprop(self, key: str) -> Optional[str]:
        v = self.shell(f"getprop {key}", check=False).strip()
        return v or None

    def push(self, local, remote: str) -> None:
        self.call("push", str(local), remote)


def list_devices(adb: Optional[str] = None) -> List[str]:
    """Serials of attached devices in the ``device`` state (``adb devices``)."""
    out = Adb(adb=adb).call("devices")
    serials = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "device":
            serials.append(parts[0])
    return serials


def device_info(dev: Adb) -> dict:
    """Device model, SoC and Android version (``getprop``)."""
    info = {k: dev.getprop(v) for k, v in DEVICE_PROPS.items()}
    info["serial"] = dev.serial
    info["soc"] = info.get("soc_model") or info.get("board_platform") or info.get("hardware")
    return info


def benchmark_flags(remote_model: str, accelerator: str, threads: Optional[int], warmup: int, runs: int,
                    min_seconds: float = 0.0, extra: Sequence[str] = ()) -> List[str]:
    """The ``benchmark_model`` flags for one run (accelerator: cpu, gpu or npu -> NNAPI)."""
    if accelerator not in ("cpu", "gpu", "npu"):
        raise EdgeDeeplabError(f"unknown accelerator {accelerator!r} for benchmark_model (cpu, gpu, npu)")
    flags = [f"--graph={remote_model}",
             f"--use_gpu={'true' if accelerator == 'gpu' else 'false'}",
             f"--use_nnapi={'true' if accelerator == 'npu' else 'false'}",
             f"--num_threads={int(threads) if threads else 1}",
             f"--warmup_runs={int(warmup)}",
             f"--num_runs={int(runs)}"]
    if min_seconds:
        flags.append(f"--min_secs={float(min_seconds):g}")
    return flags + list(extra)


def run_device(serial: Optional[str], models: Sequence, binary, *, accelerators=("cpu",), threads=None,
               warmup: int = 5, runs: int = 50, min_seconds: float = 0.0, adb: Optional[str] = None,
               extra_flags: Sequence[str] = (), timeout: float = 900,
               progress: Optional[Callable[[str], None]] = None) -> dict:
    """Benchmarks ``models`` on one device. Never raises for per-model failures.

    Returns:
        ``{"device": {...}, "results": [...], "errors": [...]}``; each result follows the harness
        schema with ``runtime="benchmark_model"`` and the device info attached.
    """
    out = {"device": {"serial": serial}, "results": [], "errors": []}
    try:
        dev = Adb(serial, adb=adb, timeout=timeout)
        info = device_info(dev)
        out["device"] = info
        remote_bin = f"{REMOTE_DIR}/{Path(binary).name}"
        dev.push(binary, remote_bin)
        dev.shell(f"chmod 755 {shlex.quote(remote_bin)}")
    except EdgeDeeplabError as e:
        out["errors"].append({"model": None, "accelerator": None, "serial": serial, "error": str(e)})
        return out
    for model in models:
        model = Path(model)
        remote_model = f"{REMOTE_DIR}/{model.name}"
        try:
            if not model.is_file():
                raise EdgeDeeplabError(f"model not found: {model}")
            dev.push(model, remote_model)
        except EdgeDeeplabError as e:
            for acc in accelerators:
                out["errors"].append({"model": str(model), "accelerator": acc, "serial": serial, "error": str(e)})
            continue
        for acc in accelerators:
            if progress:
                progress(f"{info.get('model') or serial}: {model.name} on {acc}")
            flags = benchmark_flags(remote_model, acc, threads, warmup, runs, min_seconds, extra_flags)
            cmd = " ".join([shlex.quote(remote_bin)] + [shlex.quote(f) for f in flags])
            try:
                text = dev.shell(cmd, check=False)
            except EdgeDeeplabError as e:
                out["errors"].append({"model": str(model), "accelerator": acc, "serial": serial, "error": str(e)})
                continue
            parsed = parse_benchmark_model_output(text)
            row = {"model": str(model), "model_name": model.name, "accelerator": acc,
                   "runtime": "benchmark_model", "runtime_version": None, "threads": threads,
                   "size_mb": round(model.stat().st_size / 1e6, 3), "device": info,
                   "command": f"adb shell {cmd}"}
            row.update({k: v for k, v in parsed.items() if k not in ("ok", "error")})
            if acc == "cpu" and row["fully_accelerated"] is None:
                row["fully_accelerated"] = True  # plain CPU run: nothing to fall back from
            if not parsed["ok"]:
                out["errors"].append({"model": str(model), "accelerator": acc, "serial": serial,
                                      "error": f"benchmark_model failed: {parsed['error']}"})
                continue
            out["results"].append(row)
    return out


def run_devices(serials: Sequence[Optional[str]], models: Sequence, binary, **kwargs) -> List[dict]:
    """:func:`run_device` on every serial in parallel (one thread each); results in serial order.

    An empty ``serials`` means every attached device (``adb devices``).
    """
    binary = Path(binary)
    if not binary.is_file():
        raise EdgeDeeplabError(f"benchmark binary not found: {binary} (pass --benchmark-binary PATH)")
    serials = list(serials) or list_devices(kwargs.get("adb"))
    if not serials:
        raise EdgeDeeplabError("no Android device attached (adb devices lists none)")
    lock = threading.Lock()
    user_progress = kwargs.pop("progress", None)

    def progress(msg):
        if user_progress:
            with lock:
                user_progress(msg)

    with ThreadPoolExecutor(max_workers=len(serials)) as pool:
        futs = [pool.submit(run_device, s, models, binary, progress=progress, **kwargs) for s in serials]
        return [f.result() for f in futs]


def device_report(serials: Sequence[Optional[str]], models: Sequence, binary, *, accelerators="cpu",
                  threads=None, warmup: int = 5, runs: int = 50, min_seconds: float = 0.0,
                  adb: Optional[str] = None, progress=None) -> dict:
    """:func:`run_devices` as one report dict of the local harness' schema (``results``,
    ``errors``, ``skipped``, ``devices``, ``machine``, ``settings``).

    Args:
        accelerators: a comma string or list of ``cpu``, ``gpu``, ``npu`` or ``all``.
    """
    from edge_deeplab.core.sysinfo import machine_info

    accs = [a.strip() for a in accelerators.split(",")] if isinstance(accelerators, str) else list(accelerators)
    accs = ["cpu", "gpu", "npu"] if "all" in accs else accs
    per_dev = run_devices(serials, models, binary, accelerators=accs, threads=threads, warmup=warmup,
                          runs=runs, min_seconds=min_seconds, adb=adb, progress=progress)
    return {"results": [r for d in per_dev for r in d["results"]],
            "errors": [e for d in per_dev for e in d["errors"]], "skipped": [],
            "devices": [d["device"] for d in per_dev], "machine": machine_info(),
            "settings": {"adb": True, "accelerators": accs, "threads": threads, "warmup": warmup,
                         "runs": runs, "benchmark_binary": binary}}
