"""Shared fixtures for the data tests: tiny real-format trees made by the ``data.py`` scripts kept
beside the fixtures, written once per session into a temporary folder, and their shards."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def load_fixture_module(name: str) -> ModuleType:
    """``tests/data/<name>/data.py`` as a module (the folders are not packages)."""
    spec = importlib.util.spec_from_file_location(f"geodino_fixture_{name}", HERE / name / "data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes that must import this checkout's geodino."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="session")
def ben_fixtures() -> ModuleType:
    return load_fixture_module("bigearthnet")


@pytest.fixture(scope="session")
def ben_v1(tmp_path_factory, ben_fixtures) -> dict:
    return ben_fixtures.write_v1(tmp_path_factory.mktemp("ben-v1"), patches=4)


@pytest.fixture(scope="session")
def ben_v2(tmp_path_factory, ben_fixtures) -> dict:
    return ben_fixtures.write_v2(tmp_path_factory.mktemp("ben-v2"), patches=4)


@pytest.fixture
def ben_v1_copy(tmp_path, ben_v1) -> dict:
    """A private copy of the v1 tree that a test may damage."""
    root = tmp_path / "v1"
    shutil.copytree(Path(ben_v1["s2_root"]).parent, root)
    return {**ben_v1, "s2_root": root / "BigEarthNet-v1.0", "s1_root": root / "BigEarthNet-S1-v1.0",
            "split_csvs": [root / Path(p).name for p in ben_v1["split_csvs"]]}


@pytest.fixture(scope="session")
def ben_v1_shards(tmp_path_factory, ben_v1) -> Path:
    from geodino.data.card import DatasetCard
    from geodino.data.shards.writer import write_shards
    from geodino.data.sources import bigearthnet as ben

    out = tmp_path_factory.mktemp("ben-v1-shards")
    items, rejects = ben.list_v1(ben_v1["s2_root"], ben_v1["s1_root"], ben_v1["split_csvs"])
    assert not rejects
    write_shards(out, items, ben.read_patch, DatasetCard.load("bigearthnet-v1"), shard_size=1, progress=False)
    return out


@pytest.fixture(scope="session")
def ssl4eo_tree(tmp_path_factory) -> Path:
    module = load_fixture_module("ssl4eo")
    return module.write_ssl4eo(tmp_path_factory.mktemp("ssl4eo"), locations=2, seasons=4, s1_seasons=3)["root"]


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return load_fixture_module("imagefolder").write_image_folder(tmp_path / "images")
