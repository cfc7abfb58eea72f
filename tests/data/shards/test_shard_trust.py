"""Conversions you can trust: incomplete ones refused, parts that fill one folder, re-runs that keep
what `geodino stats` measured, no temp files left, and format-2 samples that decode exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geodino.cli import main
from geodino.data.card import DatasetCard
from geodino.data.shards.format import IncompleteConversion, encode_sample, expand_shards, read_index
from geodino.data.shards.read import iter_samples
from geodino.data.shards.stream import make_shard_loader
from geodino.data.shards.writer import parse_part, write_shards

from tests.data.shards.tiny import read_tiny, tiny_card, tiny_items, write_tiny


def _mark_incomplete(folder: Path, keep: int) -> None:
    index = json.loads((folder / "index.json").read_text())
    index["shards"], index["complete"] = index["shards"][:keep], False
    (folder / "index.json").write_text(json.dumps(index))


def test_format2_sample_decodes_to_the_resampled_float_stack(tiny_shards) -> None:
    item = tiny_items()[0]
    parts = read_tiny(item)
    raw = {"__key__": item.key, "__url__": "x"}
    raw.update({name.split(".", 1)[1]: data for name, data in encode_sample(parts)})
    assert len(raw["image.bands"]) == 2 * 4 * 4 * 2 + 8 * 8 * 4 and "image.npy" not in raw  # the pixels, no more
    sample = next(s for s in iter_samples(expand_shards(tiny_shards, "train")) if s["key"] == item.key)
    optical = torch.from_numpy(parts.image[0].array.astype(np.float32))[None]
    want = F.interpolate(optical, size=(8, 8), mode="bilinear", align_corners=False)[0].numpy()
    np.testing.assert_array_equal(sample["image"][:2], want)
    np.testing.assert_array_equal(sample["image"][2], parts.image[1].array[0])
    assert read_index(tiny_shards)["format"] == "geodino-shards/2"


def test_incomplete_conversion_is_refused_by_every_reader(tiny_shards, capsys) -> None:
    _mark_incomplete(tiny_shards, keep=2)
    with pytest.raises(IncompleteConversion, match=r"incomplete \(2 of 6 shards\): re-run the same"):
        expand_shards(tiny_shards)
    with pytest.raises(IncompleteConversion):
        expand_shards(str(tiny_shards / "train-000000.tar"))  # a shard named directly, index beside it
    with pytest.raises(IncompleteConversion):
        make_shard_loader(tiny_shards, batch_size=2, num_workers=0)
    for argv in (["stats", str(tiny_shards)], ["inspect", str(tiny_shards)]):
        assert main(argv) == 2
        assert "is incomplete (2 of 6 shards)" in capsys.readouterr().err
    assert len(expand_shards(tiny_shards, allow_incomplete=True)) == 2


def test_pretraining_refuses_an_incomplete_folder_unless_allowed(tiny_shards) -> None:
    from geodino.config.load import load_config
    from geodino.data.build import build_pretrain_data

    _mark_incomplete(tiny_shards, keep=3)
    over = ["data.source=shards", f"data.root={tiny_shards}", "data.batch_size=2"]
    with pytest.raises(IncompleteConversion):
        build_pretrain_data(load_config(None, over))
    data = build_pretrain_data(load_config(None, over + ["data.allow_incomplete=true"]))
    assert data.steps_per_epoch == 3  # the 6 train samples of the 3 finished train shards


def test_parts_fill_one_folder_byte_identical_to_one_job(tmp_path) -> None:
    whole = write_tiny(tmp_path / "whole")
    parted = tmp_path / "parted"
    summaries = []
    for i in (2, 0, 1):
        write_tiny(parted, part=(i, 3))
        summaries.append(read_index(parted)["complete"])
    assert summaries == [False, False, True]  # complete once every part is
    for name in ["index.json", "rejects.jsonl", "card.yaml"] + [p.name for p in whole.glob("*.tar")]:
        assert (parted / name).read_bytes() == (whole / name).read_bytes(), name
    own = {i: [e["name"] for e in json.loads((parted / f"index.part-{i:04d}-of-0003.json").read_text())["shards"]]
           for i in range(3)}
    assert sorted(sum(own.values(), [])) == sorted(p.name for p in whole.glob("*.tar"))  # disjoint, covering
    assert parse_part("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ValueError, match="--part"):
            parse_part(bad)


def test_rerun_keeps_measured_statistics_and_removes_temp_files(tiny_shards) -> None:
    assert main(["stats", str(tiny_shards)]) == 0
    measured = DatasetCard.load(tiny_shards / "card.yaml")
    assert "statistics_from" in measured.extra and measured.mean != tiny_card().mean
    leftover = [tiny_shards / ".train-000001.tar.abc123.tmp", tiny_shards / ".index.json.x9.tmp"]
    for path in leftover:
        path.write_bytes(b"half a write")
    write_tiny(tiny_shards)
    again = DatasetCard.load(tiny_shards / "card.yaml")
    assert again.mean == measured.mean and again.std == measured.std
    assert again.extra["statistics_from"] == measured.extra["statistics_from"]
    assert not any(p.exists() for p in leftover)


def test_inspect_of_a_folder_without_samples_points_at_the_rejects(tmp_path, capsys) -> None:
    items = tiny_items(train=2, val=0, s000={"nan": True}, s001={"nan": True})

    def read_rejecting(item):
        from geodino.data.shards.format import PatchError

        raise PatchError(item.key, f"/data/{item.key}.tif", "file is missing")

    write_shards(tmp_path / "empty", items, read_rejecting, tiny_card(), shard_size=2, progress=False)
    assert main(["inspect", str(tmp_path / "empty")]) == 2
    assert "0 samples, 2 rejected: see " in capsys.readouterr().err


def test_copied_folder_with_stale_tar_outside_the_index(tiny_shards, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_shards, copy)
    (copy / "train-000099.tar").write_bytes(b"")
    assert "train-000099.tar" not in {Path(p).name for p in expand_shards(copy)}


def test_part_files_of_another_conversion_do_not_complete_this_one(tmp_path) -> None:
    """Parts left by a conversion with another seed (or item list) must not count: re-running only
    part 0 with a new seed leaves the folder incomplete instead of mixing old and new shards."""
    folder = tmp_path / "p"
    for i in (0, 1):
        write_tiny(folder, part=(i, 2))
    assert read_index(folder)["complete"]
    write_tiny(folder, part=(0, 2), seed=1)
    index = read_index(folder)
    assert not index["complete"]
    with pytest.raises(IncompleteConversion):
        expand_shards(folder)
    write_tiny(folder, part=(1, 2), seed=1)
    assert read_index(folder)["complete"]
    keys = [s["key"] for s in iter_samples(expand_shards(folder))]
    assert len(keys) == len(set(keys)) == 12
    assert (folder / "index.json").read_bytes() == (write_tiny(tmp_path / "one", seed=1) / "index.json").read_bytes()


def test_rerun_over_format1_shards_rewrites_them(tmp_path) -> None:
    folder = write_tiny(tmp_path / "d")
    index = json.loads((folder / "index.json").read_text())
    index["format"] = "geodino-shards/1"
    (folder / "index.json").write_text(json.dumps(index))
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.tar")}
    write_tiny(folder)
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in folder.glob("*.tar"))
    assert read_index(folder)["format"] == "geodino-shards/2"
