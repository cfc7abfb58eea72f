"""Benchmarks behind ``geodino bench``: each prints one JSON line, with a baseline measured in the same run."""

from __future__ import annotations

from geodino.utils import cpu_model  # noqa: F401 - every benchmark report names the CPU
