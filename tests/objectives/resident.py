"""Peak memory of a loss's own tables on the CPU, read as resident memory after every op.

Each table must be larger than glibc's largest mmap threshold (32 MB): such an allocation is its
own mapping and leaves resident memory as soon as it is freed, so the peak counts live tables."""

import os
from collections.abc import Callable

import pytest
from torch.utils._python_dispatch import TorchDispatchMode

needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc")


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_tables(run: Callable[[], object], table_bytes: int) -> float:
    """How many tables of ``table_bytes`` ``run`` held at most beyond what was resident before it
    (call it once before, so that caches and first touches do not count)."""
    peak = [0]

    class Resident(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            peak[0] = max(peak[0], resident_bytes())
            return out

    base = peak[0] = resident_bytes()
    with Resident():
        run()
    return (peak[0] - base) / table_bytes
