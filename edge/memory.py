"""Keep the edge process's resident memory from ratcheting up after large requests.

A frame may legitimately decode to tens of MB (up to ``[limits] max_tensor_bytes``):
a zstd-packed code inflates into transient numpy buffers that are freed once the frame
is answered. glibc's malloc serves blocks over ``M_MMAP_THRESHOLD`` (128 KiB at first)
with their own ``mmap`` and gives them back to the OS on free, but its threshold is
*dynamic*: each freed mmapped block raises it to that block's size (up to 32 MiB), so
later buffers of that size come from the brk heap, whose freed memory mostly stays
resident. A burst of large frames (hostile or not) then leaves the process a few
hundred MB bigger for good (``benchmarks.fuzz``: +200 MB over 2000 requests, echo).

Fixing the threshold with ``mallopt`` turns the dynamic rule off: blocks over
:data:`MMAP_THRESHOLD_BYTES` are always mmapped and returned on free, smaller ones
(most tensors of a normal frame, torch's small activations) keep the heap's reuse.
Nothing happens on a libc other than glibc, or when the operator set
``MALLOC_MMAP_THRESHOLD_`` in the environment (glibc has then applied theirs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

__all__ = ["MMAP_THRESHOLD_BYTES", "fix_mmap_threshold"]

log = logging.getLogger(__name__)

# Over this, a malloc'd block gets its own mapping, returned to the OS on free. 4 MiB
# keeps a 320x240 frame's activations on the heap (no page faults per inference) while
# the large transient buffers of big frames are never left resident.
MMAP_THRESHOLD_BYTES = 4 * 2**20
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def fix_mmap_threshold(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold_bytes``; True when it was set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False  # the operator's own setting, applied by glibc at start
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(threshold_bytes)) == 1
    except (OSError, AttributeError) as exc:
        log.debug("mallopt unavailable (%r): the malloc threshold stays dynamic", exc)
        return False
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD, %d) refused", threshold_bytes)
    return ok
