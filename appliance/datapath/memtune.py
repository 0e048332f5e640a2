"""The C allocator tuned for a backup's large, short-lived buffers (glibc only).

A backup allocates buffers of one to a few MiB all the time: file reads, compressed
and encrypted blobs, the chunker's joins. glibc serves blocks that large with a
fresh ``mmap`` and returns them with ``munmap``, so every buffer is zeroed by the
kernel and faulted in page by page; a profile showed a 2 MiB join taking ten times
as long as a copy into reused memory. Raising the mmap threshold to its maximum
(32 MiB) serves these blocks from the heap instead, and raising the trim threshold
keeps freed heap memory for the next buffer rather than handing it back at once.
The process keeps up to that much memory it no longer uses; buffers in flight are
bounded by the sink, so this stays a fixed amount. Other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

# mallopt parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Blocks up to this size come from the heap (glibc's upper limit on 64-bit systems).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept for reuse before it is returned.
TRIM_THRESHOLD = 128 * 1024 * 1024

_lock = threading.Lock()
_done: bool | None = None


def tune_allocator() -> bool:
    """Apply the thresholds once per process; True when the C library accepted them."""
    global _done
    with _lock:
        if _done is None:
            _done = _apply()
        return _done


def _apply() -> bool:
    try:
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
        # gnu_get_libc_version exists only in glibc, whose parameter numbers these are.
        if mallopt is None or getattr(libc, "gnu_get_libc_version", None) is None:
            return False
    except OSError:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
