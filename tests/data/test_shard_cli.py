"""``geodino shard`` end to end for every source, including --strict and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geodino.cli import main
from geodino.data.card import DatasetCard
from geodino.data.shards.format import RGB8_KEY, assemble_batch, expand_shards, read_index
from geodino.data.shards.read import iter_samples
from geodino.data.shards.stream import make_shard_loader
from geodino.data.sources import bigearthnet_labels as L
from geodino.data.sources.imagefolder import load_rgb


def test_bigearthnet_v1(ben_v1, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["shard", "bigearthnet", "--s2-root", str(ben_v1["s2_root"]), "--s1-root", str(ben_v1["s1_root"]),
            "--split-csv", *map(str, ben_v1["split_csvs"]), "--out", str(out), "--shard-size", "2",
            "--workers", "1", "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "train: 2 written, 0 rejected" in text and "summary.json" in text
    assert sorted(p.name for p in out.glob("*.tar")) == ["test-000000.tar", "train-000000.tar", "val-000000.tar"]
    assert json.loads((out / "summary.json").read_text())["written"] == {"test": 1, "train": 2, "val": 1}
    assert DatasetCard.load(out / "card.yaml").classes == list(L.CLASSES_19)
    assert read_index(out)["card"]["name"] == "bigearthnet-v1"


def test_bigearthnet_v2_with_reference_maps(ben_v2, tmp_path) -> None:
    out = tmp_path / "out"
    assert main(["shard", "bigearthnet", "--version", "2", "--s2-root", str(ben_v2["s2_root"]),
                 "--s1-root", str(ben_v2["s1_root"]), "--reference-maps", str(ben_v2["reference_maps"]),
                 "--out", str(out), "--workers", "1", "--no-progress"]) == 0  # metadata found beside the S2 root
    samples = list(iter_samples(expand_shards(out)))
    assert sorted(s["meta"]["split"] for s in samples) == ["test", "test", "train", "val"]
    for s in samples:
        assert s["mask"].shape == (120, 120) and s["corine"].dtype == np.uint16
        assert {"contains_seasonal_snow", "contains_cloud_or_shadow", "crs", "transform"} <= set(s["meta"])
    batch = next(iter(make_shard_loader(out, batch_size=2, num_workers=0, split="test", steps_per_epoch=1)))
    assert batch["mask"].shape == (2, 120, 120) and batch["labels43"].shape == (2, 43)


def test_strict_names_the_file(ben_v1_copy, tmp_path, capsys) -> None:
    s2 = sorted(ben_v1_copy["pairs"])[0]
    (Path(ben_v1_copy["s2_root"]) / s2 / f"{s2}_B12.tif").write_bytes(b"not a tiff")
    argv = ["shard", "bigearthnet", "--s2-root", str(ben_v1_copy["s2_root"]), "--s1-root",
            str(ben_v1_copy["s1_root"]), "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress"]
    assert main(argv + ["--strict"]) == 2
    assert f"{s2}_B12.tif" in capsys.readouterr().err
    assert main(argv) == 0
    reject = json.loads((tmp_path / "out" / "rejects.jsonl").read_text())
    assert reject["patch"] == s2 and reject["file"].endswith("_B12.tif") and reject["split"] == "all"
    assert "all: 3 written, 1 rejected" in capsys.readouterr().out


def test_ssl4eo(ssl4eo_tree, tmp_path) -> None:
    out = tmp_path / "out"
    assert main(["shard", "ssl4eo-s12", "--root", str(ssl4eo_tree), "--out", str(out), "--product", "l1c",
                 "--workers", "1", "--no-progress"]) == 0
    samples = list(iter_samples(expand_shards(out)))
    assert sorted(s["key"] for s in samples) == [f"{loc:07d}_{i}" for loc in range(2) for i in range(3)]
    assert all(s["image"].shape == (15, 264, 264) for s in samples)
    assert len((out / "rejects.jsonl").read_text().splitlines()) == 2  # the unpaired 4th seasons
    assert DatasetCard.load(out / "card.yaml").band_names[-2:] == ["VH", "VV"]


def test_imagefolder(image_folder, tmp_path) -> None:
    root = image_folder
    out = tmp_path / "out"
    assert main(["shard", "imagefolder", "--root", str(root), "--out", str(out), "--workers", "1",
                 "--no-progress"]) == 0
    samples = {s["key"]: s for s in iter_samples(expand_shards(out))}
    key = "n01440764_n01440764_0"
    assert samples[key]["image"] == (root / "n01440764" / "n01440764_0.JPEG").read_bytes()
    assert samples[key]["label"] == 0
    assert DatasetCard.load(out / "card.yaml").classes == ["n01440764", "n01443537"]
    loader = make_shard_loader(out, batch_size=6, num_workers=0, image_size=32, shuffle_buffer=1)
    batch = next(iter(loader))
    assert batch["image"].shape == (6, 3, 32, 32) and batch["label"].dtype == torch.int64
    # Training batches carry the JPEGs' 8-bit RGB, a quarter of the bytes, and assemble on the
    # device to exactly the float32 decode.
    training = next(iter(make_shard_loader(out, batch_size=6, num_workers=0, image_size=32, shuffle_buffer=1,
                                           device_assembly=True)))
    assert training[RGB8_KEY].dtype == torch.uint8 and "image" not in training
    assert training["key"] == batch["key"] and torch.equal(assemble_batch(training), batch["image"])
    i = batch["key"].index(key)
    assert (batch["image"][i] == load_rgb(samples[key]["image"], 32)).all()


@pytest.mark.parametrize("argv", [["shard", "bigearthnet", "--version", "2", "--s2-root", "/nope/S2",
                                   "--s1-root", "/nope/S1", "--out", "/tmp/x"]])
def test_missing_metadata_is_a_clear_error(argv, capsys) -> None:
    assert main(argv) == 2
    assert "metadata.parquet" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--metadata", "m.parquet", "--reference-maps", "maps"],
     "--metadata, --reference-maps: for BigEarthNet v2, but this conversion reads v1 (--version 1)"),
    (["--version", "2", "--split-csv", "train.csv"], "--split-csv: for BigEarthNet v1, but this conversion reads v2"),
])
def test_options_of_the_other_version_are_refused_not_ignored(extra, message, tmp_path, capsys) -> None:
    argv = ["shard", "bigearthnet", "--s2-root", "/nope/S2", "--s1-root", "/nope/S1", "--out", str(tmp_path / "o"),
            *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_conversion_that_rejects_every_patch_fails_naming_the_first_reason(ben_v1, tmp_path, capsys) -> None:
    # S2 and S1 roots swapped: every patch is refused. It ended "0 written, 8 rejected", exit 0.
    out = tmp_path / "out"
    argv = ["shard", "bigearthnet", "--s2-root", str(ben_v1["s1_root"]), "--s1-root", str(ben_v1["s2_root"]),
            "--out", str(out), "--workers", "1", "--no-progress"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "0 written" in captured.out  # the summary is still shown
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "nothing converted: all " in err and "patches were rejected" in err
    assert "the first: " in err and f"{out}/rejects.jsonl" in err
