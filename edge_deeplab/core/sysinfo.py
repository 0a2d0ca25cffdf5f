"""What this machine is: CPU, cores, memory, OS, Python, installed runtimes and package versions.

Used by the benchmark reports and the quickstart report (one implementation). Reads ``/proc`` and
package metadata only; TensorFlow and the runtimes are never imported for their versions.

Example:
    >>> info = machine_info()
    >>> sorted(k for k in ("python", "logical_cpus", "runtimes") if k in info)
    ['logical_cpus', 'python', 'runtimes']
"""

from __future__ import annotations

import os
import platform
from typing import Dict, Optional


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
    """CPU, cores, memory, OS, Python and runtime versions, and the load average."""
    import numpy as np

    info = {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "logical_cpus": os.cpu_count(), "numpy": np.__version__}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        info["runtimes"] = available_runtimes()
    except Exception:  # noqa: BLE001
        info["runtimes"] = {}
    return info
