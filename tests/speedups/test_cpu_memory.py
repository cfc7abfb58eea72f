import platform

import pytest

from geodino.speedups import cpu_memory


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setattr(cpu_memory, "_applied", None)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_malloc_is_tuned_once():
    assert cpu_memory.keep_freed_memory() is True
    assert cpu_memory.keep_freed_memory() is True  # cached: mallopt is not called again


def test_environment_variable_opts_out(monkeypatch):
    monkeypatch.setenv("GEODINO_KEEP_FREED_MEMORY", "0")
    assert cpu_memory.keep_freed_memory() is False
