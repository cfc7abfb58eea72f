"""Split names: any spelling finds a split, folders of older names still read, each role reads
what it may (train for training and statistics, val else test for validation)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from geodino.cli import main
from geodino.data.shards.format import ShardFormatError, expand_shards, shard_split, training_shards
from geodino.data.splits import SplitError, check_disjoint, training_split, validation_split

SIZE = 16  # pixels of the tiny scenes


@dataclass(frozen=True)
class Item:
    key: str
    split: str
    index: int


def _read(item: Item):
    """A synthetic scene as shard parts, whatever the split is called (the scene stream is the
    train one, offset per split so that no two splits hold the same scene)."""
    from geodino.data.sources.synthetic_shards import SyntheticItem, read_item

    parts = read_item(SyntheticItem(item.key, "train", item.index), image_size=SIZE, num_classes=8, seed=0)
    parts.meta["split"] = item.split
    return parts


def write_split_shards(out: Path, splits: dict[str, int], shard_size: int = 2) -> Path:
    """A shard folder (index.json, card.yaml) with ``splits[name]`` tiny synthetic scenes in split
    ``name``, written as ``<name>-NNNNNN.tar`` whatever the name (older folders used names such
    as ``validation`` or ``bigearthnet-train``)."""
    from geodino.data.shards.writer import write_shards
    from geodino.data.synthetic import synthetic_card

    items = [Item(f"{name.replace('-', '_')}_{i:04d}", name, 1000 * n + i)
             for n, (name, count) in enumerate(splits.items()) for i in range(count)]
    write_shards(out, items, _read, synthetic_card(), shard_size=shard_size, strict=True, progress=False)
    return out


@pytest.fixture(scope="module")
def three_splits(tmp_path_factory) -> Path:
    """4 train, 2 val and 2 test scenes in shards of 2."""
    return write_split_shards(tmp_path_factory.mktemp("three-splits"), {"train": 4, "val": 2, "test": 2})


def _names(paths: list[str]) -> list[str]:
    return [Path(p).name for p in paths]


def test_any_spelling_of_a_split_finds_its_shards(three_splits) -> None:
    for alias in ("val", "valid", "validation", "VALIDATION"):
        assert _names(expand_shards(three_splits, alias)) == ["val-000000.tar"]
        assert _names(training_shards(three_splits, alias)) == ["val-000000.tar"]
    assert _names(expand_shards(three_splits, "testing")) == ["test-000000.tar"]
    with pytest.raises(FileNotFoundError, match=r"no shards of split 'all' .*\(it has test, train, val\)"):
        expand_shards(three_splits, "all")


def test_shard_names_of_older_folders_map_to_the_split_names(tmp_path) -> None:
    folder = write_split_shards(tmp_path / "old", {"bigearthnet-train": 2, "validation": 2, "BigEarthNet_test": 1})
    assert sorted(_names(expand_shards(folder))) == [
        "BigEarthNet_test-000000.tar", "bigearthnet-train-000000.tar", "validation-000000.tar"]
    assert [shard_split(p) for p in sorted(expand_shards(folder))] == ["test", "train", "val"]
    assert _names(training_shards(folder)) == ["bigearthnet-train-000000.tar"]
    assert _names(expand_shards(folder, "val")) == ["validation-000000.tar"]
    assert _names(validation_split(folder).paths) == ["validation-000000.tar"]


def test_training_reads_the_train_split_and_says_what_it_left_out(three_splits) -> None:
    choice = training_split(three_splits)
    assert choice.split == "train" and _names(choice.paths) == ["train-000000.tar", "train-000001.tar"]
    assert choice.describe() == (f"the train split of {three_splits} (2 shards, 4 samples); "
                                 "left out: val (1 shard, 2 samples), test (1 shard, 2 samples)")


def test_a_folder_without_standard_splits_is_used_whole(tmp_path) -> None:
    folder = write_split_shards(tmp_path / "unsplit", {"all": 3})
    choice = training_split(folder)
    assert _names(choice.paths) == ["all-000000.tar", "all-000001.tar"] and not choice.left_out
    assert choice.describe() == (f"all of {folder}, which has no train/val/test split (only all) "
                                 "(2 shards, 3 samples)")


def test_held_out_data_without_a_train_split_is_refused(tmp_path) -> None:
    folder = write_split_shards(tmp_path / "held-out", {"val": 2, "test": 2})
    with pytest.raises(ShardFormatError, match=rf"{folder} has no train split \(it has test, val\)"):
        training_shards(folder)
    assert _names(training_shards(folder, "test")) == ["test-000000.tar"]  # named explicitly: allowed


def test_validation_takes_val_else_test_and_never_training_data(tmp_path, three_splits) -> None:
    assert validation_split(three_splits).split == "val"
    only_test = write_split_shards(tmp_path / "train-test", {"train": 2, "test": 2})
    assert validation_split(only_test).split == "test"
    only_train = write_split_shards(tmp_path / "train-only", {"train": 2})
    with pytest.raises(SplitError, match=r"has no val or test split \(it has train\): .* with --val-split$"):
        validation_split(only_train)
    with pytest.raises(SplitError, match="data.val_split"):
        validation_split(only_train, option="data.val_split")


def test_training_and_validation_may_not_share_shards(three_splits) -> None:
    check_disjoint(training_split(three_splits), validation_split(three_splits))
    with pytest.raises(SplitError, match="are the same shards"):
        check_disjoint(training_split(three_splits), validation_split(three_splits, "train"))
    with pytest.raises(SplitError, match=r"share 1 shard\(s\)"):
        check_disjoint(training_split(three_splits, "all"), validation_split(three_splits, "validation"))


def test_stats_measure_the_train_split(tmp_path, capsys) -> None:
    folder = write_split_shards(tmp_path / "three", {"train": 3, "val": 2, "test": 2})
    assert main(["stats", str(folder), "--no-progress"]) == 0
    assert "3 samples, 2 shard(s)" in capsys.readouterr().out
    held_out = write_split_shards(tmp_path / "held-out", {"val": 2})
    assert main(["stats", str(held_out), "--no-progress"]) == 2
    assert "has no train split (it has val)" in capsys.readouterr().err


def test_a_list_of_folders_gives_each_folders_train_split(tmp_path) -> None:
    """``data.root: A::B`` (or a list) must not pretrain or measure statistics on val/test."""
    from geodino.data.shards.format import training_shards
    from geodino.data.sources.synthetic_shards import write_synthetic_shards

    for name in ("A", "B"):
        write_synthetic_shards(tmp_path / name, num_samples=16, val_samples=8, image_size=8, shard_size=8,
                               progress=False)
    want = [str(tmp_path / n / f"train-00000{i}.tar") for n in ("A", "B") for i in (0, 1)]
    assert training_shards(f"{tmp_path / 'A'}::{tmp_path / 'B'}") == want
    assert training_shards([str(tmp_path / "A"), str(tmp_path / "B")]) == want
