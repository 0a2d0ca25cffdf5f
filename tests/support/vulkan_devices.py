"""Whether this machine has a Vulkan device (a GPU driver, or Mesa's lavapipe), asked of the Vulkan
loader itself in a subprocess: the capability the LiteRT GPU accelerator (WebGPU over Vulkan) needs.

Tests that must see GPU results skip only when this says there is no device; if a device exists
and the accelerator still does not start, that is a failure, not a skip.
"""

from __future__ import annotations

import functools
import subprocess
import sys

_PROBE = r"""
import ctypes
try:
    lib = ctypes.CDLL("libvulkan.so.1")
except OSError:
    print(0); raise SystemExit
class Info(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int), ("pNext", ctypes.c_void_p), ("flags", ctypes.c_uint32),
                ("pApplicationInfo", ctypes.c_void_p), ("enabledLayerCount", ctypes.c_uint32),
                ("ppEnabledLayerNames", ctypes.c_void_p), ("enabledExtensionCount", ctypes.c_uint32),
                ("ppEnabledExtensionNames", ctypes.c_void_p)]
inst = ctypes.c_void_p()
if lib.vkCreateInstance(ctypes.byref(Info(1, None, 0, None, 0, None, 0, None)), None, ctypes.byref(inst)) != 0:
    print(0); raise SystemExit
n = ctypes.c_uint32()
lib.vkEnumeratePhysicalDevices(inst, ctypes.byref(n), None)
lib.vkDestroyInstance(inst, None)
print(n.value)
"""


@functools.lru_cache(maxsize=1)
def vulkan_device_count() -> int:
    """Number of Vulkan physical devices (0 without a loader, an ICD or a device)."""
    try:
        p = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
        return int(p.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return 0


def require_vulkan_device() -> None:
    """``pytest.skip`` naming the missing capability when no Vulkan device exists."""
    import pytest

    if vulkan_device_count() == 0:
        pytest.skip("no Vulkan device (no GPU driver and no Mesa lavapipe): the LiteRT GPU "
                    "accelerator cannot start here")
