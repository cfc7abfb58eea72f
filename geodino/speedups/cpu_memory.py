"""Keep freed tensor memory in the process when training on the CPU.

glibc's malloc hands large freed blocks back to the operating system (``munmap``, heap trimming)
and takes them again on the next allocation, so every training step page-faults its activations
and gradients back in. On the 2-core machines this project is measured on, a page fault costs
microseconds and the DINO step allocates gigabytes: ``geodino bench step`` ran ~8 % faster with
the settings below (see BENCHMARKS.md). PyTorch's CPU tuning guide reaches the same end by
preloading jemalloc or tcmalloc; this needs no extra library.

Set ``GEODINO_KEEP_FREED_MEMORY=0`` (or ``GEODINO_SPEEDUPS=off``) to leave malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from geodino.speedups.switch import feature_on

log = logging.getLogger("geodino")

# mallopt(3) parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4

# The largest mmap threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2): blocks up to
# this size come from the heap and are reused.
_MMAP_THRESHOLD = 32 * 2**20
# No block is mapped on its own, larger ones included: the 64 MB gradient of a 65536-prototype
# layer was mapped afresh (and page-faulted in, 16 384 faults) every step or two. Threads whose
# arena cannot grow that far still fall back to mmap inside glibc.
_MMAP_MAX = 0
_TRIM_THRESHOLD = 2**31 - 1  # the largest an int holds: the top of the heap is not given back
_TOP_PAD = 64 * 2**20  # grow the heap in steps large enough for a batch of activations

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc once per process; True if it was tuned (False on other C libraries)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not feature_on("GEODINO_KEEP_FREED_MEMORY"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_MMAP_MAX, _MMAP_MAX),
                (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD))
    _applied = all(mallopt(param, value) == 1 for param, value in settings)
    if not _applied:
        log.debug("mallopt refused a setting; malloc left partly at its defaults")
    return _applied
