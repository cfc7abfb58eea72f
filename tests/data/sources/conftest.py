"""Fixtures of the source-reader tests: the torchgeo-shaped BigEarthNet trees and a decoder that
turns reader output into what a shard sample decodes to."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from geodino.data.shards.format import SampleParts, decode_sample, encode_sample


def decode_parts(parts: SampleParts) -> dict[str, Any]:
    """``parts`` through the shard codec: encoded to tar members, then decoded as a loader would."""
    raw: dict[str, Any] = {"__key__": parts.key, "__url__": "memory"}
    raw.update((name.split(".", 1)[1], data) for name, data in encode_sample(parts))
    return decode_sample(raw)


@pytest.fixture(scope="session")
def decode() -> Callable[[SampleParts], dict[str, Any]]:
    return decode_parts


@pytest.fixture(scope="session")
def ben_tg_v1(tmp_path_factory, ben_fixtures) -> dict:
    return ben_fixtures.write_v1_torchgeo_like(tmp_path_factory.mktemp("ben-tg-v1"))


@pytest.fixture(scope="session")
def ben_tg_v2(tmp_path_factory, ben_fixtures) -> dict:
    return ben_fixtures.write_v2_torchgeo_like(tmp_path_factory.mktemp("ben-tg-v2"))
