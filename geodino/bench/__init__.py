"""Benchmarks behind ``geodino bench``: each prints one JSON line, with a baseline measured in the same run."""

from __future__ import annotations


def cpu_model() -> str:
    """The CPU's model name (Linux), so every figure names the machine it was measured on."""
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
