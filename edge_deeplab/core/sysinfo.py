"""What this machine is: the CPU's instruction-set features that decide int8 (and oneDNN) speed,
cores, memory, OS, Python, installed runtimes and package versions; read without TensorFlow (``/proc``
and package metadata only). Used by the benchmark and quickstart reports (one implementation).

int8 inference is only much faster than float32 on CPUs with int8 dot-product instructions:

* x86: AVX-512 VNNI (``avx512_vnni``), AVX-VNNI (``avx_vnni``, the VEX form on client cores) or AMX
  (``amx_int8``). With AVX2 alone, XNNPACK's int8 kernels widen to 16 bits and do about as many
  multiply-adds per cycle as its float32 FMA kernels, which already run near the CPU's peak: int8 is
  then about as fast as float32 (measured 1.0x on an AVX2-only AMD EPYC, 2.8-3.7x with AVX-512 VNNI).
* ARM: ``dotprod`` (``asimddp``, SDOT/UDOT, Armv8.2+) and ``i8mm`` (SMMLA, Armv8.6+); every recent
  phone core has dotprod.

Benchmarks and the quickstart report record :func:`cpu_isa` so that numbers from different machines
can be compared, and :func:`int8_speed_note` explains a small or absent int8 speed-up.

Example:
    >>> isa = cpu_isa()
    >>> sorted(isa)[:3]
    ['arch', 'features', 'int8_dot_product']
"""

from __future__ import annotations

import os
import platform
from typing import Dict, Optional

#: x86 /proc/cpuinfo flag -> name shown in reports
X86_FEATURES = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512F",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "avx_vnni": "AVX-VNNI",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
}
#: ARM /proc/cpuinfo "Features" flag -> name shown in reports
ARM_FEATURES = {
    "asimd": "NEON",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "sve": "SVE",
    "bf16": "BF16",
}
#: the features that give int8 kernels a real dot-product path
INT8_DOT = ("AVX-512 VNNI", "AVX-VNNI", "AMX-INT8", "dotprod", "i8mm")


def _proc_field(path: str, keys) -> Optional[str]:
    """The value of the first ``key: value`` line of a /proc file whose key is in ``keys``, or None."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in keys:
                    return value.strip()
    except OSError:
        pass
    return None


def _cpuinfo_flags() -> set:
    return set((_proc_field("/proc/cpuinfo", ("flags", "features")) or "").split())


def _macos_arm_flags() -> set:
    import subprocess

    names = {"hw.optional.arm.FEAT_DotProd": "asimddp", "hw.optional.arm.FEAT_I8MM": "i8mm",
             "hw.optional.neon": "asimd"}
    flags = set()
    for key, flag in names.items():
        try:
            out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.stdout.strip() == "1":
            flags.add(flag)
    return flags


def cpu_isa(flags: Optional[set] = None, arch: Optional[str] = None) -> Dict:
    """The CPU's int8-relevant instruction-set features.

    Args:
        flags: CPU flags as in ``/proc/cpuinfo`` (read from this machine when ``None``).
        arch: ``platform.machine()`` value (this machine's when ``None``).

    Returns:
        ``{"arch", "features": [names], "int8_dot_product": [names] (empty: none),
        "tf_onednn": the TF_ENABLE_ONEDNN_OPTS setting in effect or None}``.

    Example:
        >>> cpu_isa({"avx2", "fma"}, "x86_64")["int8_dot_product"]
        []
        >>> cpu_isa({"asimd", "asimddp"}, "aarch64")["int8_dot_product"]
        ['dotprod']
    """
    arch = (arch or platform.machine() or "unknown").lower()
    if flags is None:
        flags = _cpuinfo_flags()
        if not flags and platform.system() == "Darwin" and arch in ("arm64", "aarch64"):
            flags = _macos_arm_flags()
    table = X86_FEATURES if arch in ("x86_64", "amd64", "i686", "x86") else ARM_FEATURES
    features = [name for flag, name in table.items() if flag in flags]
    return {
        "arch": arch,
        "features": features,
        "int8_dot_product": [f for f in features if f in INT8_DOT],
        "tf_onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    }


def isa_line(isa: Dict) -> str:
    """One line for reports, e.g. ``x86_64: AVX2, FMA; int8 dot product: none``."""
    feats = ", ".join(isa.get("features") or []) or "no listed features"
    dot = ", ".join(isa.get("int8_dot_product") or []) or "none"
    return f"{isa.get('arch', '?')}: {feats}; int8 dot product: {dot}"


def int8_speed_note(isa: Dict, speedup: Optional[float] = None) -> str:
    """Why int8 is (or is not) faster than float32 on this CPU, in one or two sentences.

    Example:
        >>> int8_speed_note({"arch": "x86_64", "int8_dot_product": []}, 1.02).startswith("int8 is 1.02x")
        True
    """
    dot = isa.get("int8_dot_product") or []
    got = f"int8 is {speedup:.2f}x float32 here" if speedup is not None else "int8 speed"
    if dot:
        return (f"{got}; this CPU has int8 dot-product instructions ({', '.join(dot)}), which "
                f"XNNPACK's int8 kernels use (expect about 2.5-4x on large models).")
    if isa.get("arch") in ("x86_64", "amd64"):
        return (f"{got}: this CPU has no AVX-512 VNNI, AVX-VNNI or AMX, so XNNPACK's int8 kernels "
                f"do about as many multiply-adds per cycle as its float32 FMA kernels, which already "
                f"run near peak; expect about 1x. int8 still shrinks the model 4x, and phones (ARM "
                f"dotprod/i8mm) and NPUs get the speed-up.")
    return (f"{got}: this CPU reports no int8 dot-product instructions (ARM dotprod/i8mm); expect "
            f"a modest int8 speed-up.")


def pkg_version(dist: str) -> Optional[str]:
    """Installed version of distribution ``dist`` (e.g. ``"ai-edge-litert"``), or None."""
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001
        return None


def available_runtimes() -> Dict[str, str]:
    """Installed .tflite runtimes and their versions, e.g. ``{"litert": "2.3.0", ...}``."""
    found = {}
    try:
        import ai_edge_litert  # noqa: F401

        v = pkg_version("ai-edge-litert") or "unknown"
        found["litert"] = v
        found["interpreter"] = v
    except ImportError:
        pass
    try:
        import tflite_runtime  # noqa: F401

        found["tflite_runtime"] = pkg_version("tflite-runtime") or getattr(tflite_runtime, "__version__", "unknown")
    except ImportError:
        pass
    return found


def machine_info() -> dict:
    """CPU, its int8-relevant ISA features, cores, memory, OS, Python, runtimes and the load average."""
    import numpy as np

    info = {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "logical_cpus": os.cpu_count(), "numpy": np.__version__}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    cpu = _proc_field("/proc/cpuinfo", ("model name",))
    if cpu:
        info["cpu"] = cpu
    mem = _proc_field("/proc/meminfo", ("memtotal",))
    if mem:
        info["memory_gb"] = round(int(mem.split()[0]) / 1024 / 1024, 1)
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    info["isa"] = cpu_isa()
    try:
        info["runtimes"] = available_runtimes()
    except Exception:  # noqa: BLE001
        info["runtimes"] = {}
    return info
