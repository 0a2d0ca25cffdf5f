"""Frame buffers reused instead of handed back to the kernel (glibc's allocator), for the demo loop.

Every full-resolution step of the demo (a 720p BGR frame is 2.7 MB, a float32 plane 3.7 MB)
allocates its output, and glibc serves blocks that large with ``mmap`` and returns them with
``munmap`` (or trims its heap back to the kernel) as soon as they are freed. The next frame's
buffers are then fresh pages that the kernel must zero and fault in one by one: measured on the
2-core AMD EPYC machine at 720p, the matte went from 2.5 to 6.2 ms of CPU per frame and the blend
from 2.3 to 9 ms under a busy machine's memory traffic (benchmarks/README.md). Raising glibc's
``mmap`` threshold and trim threshold keeps freed frame buffers in the process, so the next frame
reuses the same, already mapped pages: no page is zeroed twice.

Only glibc has :func:`keep_freed_buffers`' knobs (``mallopt``); elsewhere it does nothing.

Example:
    >>> keep_freed_buffers() in (True, False)
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap, not from their own mmap (glibc's largest allowed
#: value on 64-bit: half its 64 MiB arena heap); a 4K frame (3840x2160x3) is 24 MiB.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept before it is trimmed back to the kernel.
TRIM_THRESHOLD = 256 * 1024 * 1024

_done = None


def keep_freed_buffers() -> bool:
    """Makes glibc keep freed frame-sized blocks for reuse (once per process); True if it did.

    Returns:
        False on a C library without ``mallopt`` (macOS, Windows, musl): nothing changed.

    Example:
        >>> keep_freed_buffers() == keep_freed_buffers()   # idempotent
        True
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _done
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
