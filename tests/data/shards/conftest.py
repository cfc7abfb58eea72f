"""Fixtures of the shard tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.shards.tiny import write_tiny


@pytest.fixture
def tiny_shards(tmp_path) -> Path:
    return write_tiny(tmp_path / "tiny")
