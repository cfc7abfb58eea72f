"""The data-source registry: one lookup for every job, clear refusals, pretraining that says which
split it reads, and no import circle between the data modules."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from geodino.config import load_config
from geodino.data.build import build_pretrain_data
from geodino.data.card import CardError, DatasetCard
from geodino.data.registry import DataSource, SourceError, get_source, register_source, source_names
from tests.data.conftest import subprocess_env
from tests.data.test_splits import write_split_shards

SHARDS = ["data.source=shards", "data.batch_size=2", "data.shuffle_buffer=4"]


def test_the_registry_lists_its_sources_and_what_each_serves() -> None:
    assert source_names() == ["synthetic", "imagefolder", "shards", "sen12ms"]
    assert source_names("pretraining") == ["synthetic", "imagefolder", "shards"]
    assert source_names("evaluation") == ["synthetic", "shards"]
    assert source_names("segmentation") == ["synthetic", "shards", "sen12ms"]
    assert get_source("shards").name == "shards" and not get_source("synthetic").reads_files


def test_an_unknown_source_names_the_known_ones() -> None:
    with pytest.raises(SourceError, match="unknown data source 'tiff'; known sources: synthetic, imagefolder, "
                                          "shards, sen12ms"):
        get_source("tiff")
    with pytest.raises(SourceError, match="'imagefolder' cannot be used for segmentation; sources that can: "
                                          "synthetic, shards, sen12ms"):
        get_source("imagefolder", "segmentation")
    with pytest.raises(SourceError, match="cannot be used for pretraining"):
        get_source("sen12ms").pretrain_data(None, 0, 1)


def test_a_new_source_fills_only_the_hooks_it_serves() -> None:
    @register_source
    class Tiles(DataSource):
        name = "test-tiles"

        def pretrain_data(self, cfg, rank, world):
            return "batches"

    try:
        assert "test-tiles" in source_names("pretraining") and "test-tiles" not in source_names("evaluation")
        assert get_source("test-tiles", "pretraining").pretrain_data(None, 0, 1) == "batches"
        with pytest.raises(CardError, match="data.card"):
            get_source("test-tiles").card({})
    finally:
        from geodino.data import registry

        del registry._SOURCES["test-tiles"]


def test_a_card_names_the_recipe_card_before_the_source_does(tmp_path) -> None:
    folder = write_split_shards(tmp_path / "shards", {"train": 2})
    assert get_source("shards").card({"root": str(folder)}).name == "synthetic-sar-optical"
    assert get_source("shards").card({"root": str(folder), "card": "bigearthnet-v1"}).name == "bigearthnet-v1"
    assert get_source("synthetic").card({"num_classes": 4}).classes == DatasetCard.load(
        folder / "card.yaml").classes[:4]


def test_cards_declare_their_label_kinds() -> None:
    assert DatasetCard.load("bigearthnet-v1").label_kinds == ["labels19", "labels43"]
    assert DatasetCard.load("bigearthnet-v2").label_kinds == ["labels19", "labels43", "mask"]
    assert DatasetCard.load("imagenet").label_kinds == ["label"]
    assert DatasetCard.load("ssl4eo-s12-l2a").label_kinds == []
    undeclared = DatasetCard.load("bigearthnet-v1")
    del undeclared.extra["labels"]
    assert undeclared.label_kinds == ["label"]  # what its classes imply


def test_pretraining_reads_the_train_split_and_logs_it(tmp_path, caplog) -> None:
    folder = write_split_shards(tmp_path / "shards", {"train": 4, "val": 2, "test": 2})
    cfg = load_config(None, [*SHARDS, f"data.root={folder}", f"run.out_dir={tmp_path / 'run'}"])
    with caplog.at_level(logging.INFO, logger="geodino"):
        data = build_pretrain_data(cfg)
    assert data.steps_per_epoch == 2  # 4 train samples in batches of 2
    keys = {k for epoch in range(3) for batch in data.batches(epoch, 0) for k in batch["key"]}
    assert keys and keys <= {f"train_{i:04d}" for i in range(4)}  # a stream need not cover an epoch exactly
    assert (f"pretraining data (shards): the train split of {folder} (2 shards, 4 samples); "
            "left out: val (1 shard, 2 samples), test (1 shard, 2 samples)") in caplog.messages


def test_pretraining_on_data_without_splits_uses_all_of_it_and_says_so(tmp_path, caplog) -> None:
    folder = write_split_shards(tmp_path / "shards", {"all": 4})
    cfg = load_config(None, [*SHARDS, f"data.root={folder}", f"run.out_dir={tmp_path / 'run'}"])
    with caplog.at_level(logging.INFO, logger="geodino"):
        assert build_pretrain_data(cfg).steps_per_epoch == 2
    assert any("which has no train/val/test split (only all) (2 shards, 4 samples)" in m for m in caplog.messages)


def test_pretraining_on_held_out_data_only_is_refused(tmp_path) -> None:
    folder = write_split_shards(tmp_path / "shards", {"val": 2, "test": 2})
    cfg = load_config(None, [*SHARDS, f"data.root={folder}", f"run.out_dir={tmp_path / 'run'}"])
    with pytest.raises(ValueError, match=rf"^{folder} has no train split \(it has test, val\)"):
        build_pretrain_data(cfg)


MODULES = ["geodino.data.batches", "geodino.data.registry", "geodino.data.splits", "geodino.data.labelled",
           "geodino.data.segmentation", "geodino.data.build", "geodino.data.shards.stream", "geodino.eval.data",
           "geodino.eval.checkpoint", "geodino.finetune.data", "geodino.finetune.config", "geodino.config.load"]


def test_every_data_module_imports_first_without_a_circle() -> None:
    # Each module is imported into an interpreter holding no geodino module: an import circle
    # shows up as an ImportError for whichever module of the circle comes first.
    code = ("import importlib, sys\n"
            f"for name in {MODULES!r}:\n"
            "    for loaded in [m for m in sys.modules if m.startswith('geodino')]:\n"
            "        del sys.modules[loaded]\n"
            "    importlib.import_module(name)\n")
    run = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_data_floor_imports_no_job_and_the_stream_not_the_pretraining_door() -> None:
    import ast

    root = Path(__file__).resolve().parents[2] / "geodino"

    def imported(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        return found | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}

    for name in ("batches", "registry", "splits", "labelled", "segmentation"):
        upward = {m for m in imported(root / "data" / f"{name}.py")
                  if m.startswith(("geodino.eval", "geodino.finetune", "geodino.engine", "geodino.data.build"))}
        assert not upward, f"geodino/data/{name}.py imports {upward}"
    assert "geodino.data.build" not in imported(root / "data" / "shards" / "stream.py")
