"""Shard writing: round trip against the source, rejects, --strict, resume and determinism."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F

from geodino.data.card import DatasetCard
from geodino.data.shards.format import expand_shards, read_index
from geodino.data.shards.read import iter_samples
from geodino.data.shards.writer import plan_shards, write_shards
from geodino.data.sources import PatchError
from geodino.data.sources import bigearthnet as ben


def _items(tree: dict) -> list[ben.BigEarthNetPatch]:
    items, rejects = ben.list_v1(tree["s2_root"], tree["s1_root"], tree["split_csvs"])
    assert not rejects
    return items


def _write(tree: dict, out: Path, **kw) -> dict:
    kw = {"shard_size": 1, "progress": False, **kw}
    return write_shards(out, _items(tree), ben.read_patch, DatasetCard.load("bigearthnet-v1"), **kw)


def _band_on_grid(path: Path) -> np.ndarray:
    """A band file as float32 on the 120 px grid, computed here from the GeoTIFF (bilinear)."""
    with rasterio.open(path) as src:
        band = torch.from_numpy(src.read(1).astype(np.float32))[None, None]
    if band.shape[-1] != 120:
        band = F.interpolate(band, size=(120, 120), mode="bilinear", align_corners=False)
    return band[0, 0].numpy()


def test_samples_equal_the_source_files(ben_v1, ben_v1_shards) -> None:
    by_key = {p.key: p for p in _items(ben_v1)}
    samples = list(iter_samples(expand_shards(ben_v1_shards)))
    assert sorted(s["key"] for s in samples) == sorted(by_key)
    for s in samples:
        item = by_key[s["key"]]
        want = ben.read_patch(item)
        assert s["image"].dtype == np.float32 and s["image"].shape == (14, 120, 120)
        for i, band in enumerate(ben.BANDS):
            path = (Path(item.s1_dir) / f"{item.s1_name}_{band}.tif" if band in ben.S1_BANDS
                    else Path(item.s2_dir) / f"{item.key}_{band}.tif")
            # 10 m bands and SAR bit-exact, coarser bands as the bilinear upsampling of their file.
            np.testing.assert_allclose(s["image"][i], _band_on_grid(path), rtol=0, atol=1e-3 if band in (
                "B01", "B05", "B06", "B07", "B8A", "B09", "B11", "B12") else 0)
        np.testing.assert_array_equal(s["labels19"], want.labels19)
        np.testing.assert_array_equal(s["labels43"], want.labels43)
        assert s["meta"]["bands"] == list(ben.BANDS) and s["meta"]["split"] == by_key[s["key"]].split
        sar = s["image"][12:]
        assert not np.allclose(sar, np.round(sar))  # dB survives the round trip unrounded
    index = read_index(ben_v1_shards)
    assert index["complete"] and index["bands"] == list(ben.BANDS)
    assert index["splits"] == {"test": {"shards": 1, "samples": 1}, "train": {"shards": 2, "samples": 2},
                               "val": {"shards": 1, "samples": 1}}
    assert DatasetCard.load(ben_v1_shards / "card.yaml").band_names == list(ben.BANDS)


def test_rejects_are_logged_and_counted(ben_v1_copy, ben_fixtures, tmp_path) -> None:
    items = sorted(_items(ben_v1_copy), key=lambda p: p.key)
    corrupt, missing, nan = items[0], items[1], items[2]
    (Path(corrupt.s2_dir) / f"{corrupt.key}_B11.tif").write_bytes(b"garbage")
    (Path(missing.s2_dir) / f"{missing.key}_B09.tif").unlink()
    vh = np.full((120, 120), -20.25, dtype=np.float32)
    vh[0, 0] = np.nan
    ben_fixtures.write_band(Path(nan.s1_dir) / f"{nan.s1_name}_VH.tif", vh, (400000.0, 5600000.0))

    summary = _write(ben_v1_copy, tmp_path / "out", workers=2)
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    by_patch = {r["patch"]: r for r in rejects}
    assert set(by_patch) == {corrupt.key, missing.key, nan.key}
    assert by_patch[corrupt.key]["file"].endswith("_B11.tif") and "unreadable" in by_patch[corrupt.key]["reason"]
    assert by_patch[missing.key]["file"].endswith("_B09.tif") and "missing" in by_patch[missing.key]["reason"]
    assert by_patch[nan.key]["file"].endswith("_VH.tif") and "non-finite" in by_patch[nan.key]["reason"]
    assert sum(summary["written"].values()) == 1 and sum(summary["rejected"].values()) == 3
    assert summary["rejected"] == {s: sum(1 for r in rejects if r["split"] == s) for s in summary["rejected"]}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["written"] == summary["written"]
    assert [s["key"] for s in iter_samples(expand_shards(tmp_path / "out"))] == [items[3].key]


def test_strict_raises_naming_the_file(ben_v1_copy, tmp_path) -> None:
    item = sorted(_items(ben_v1_copy), key=lambda p: p.key)[0]
    (Path(item.s2_dir) / f"{item.key}_B03.tif").unlink()
    with pytest.raises(PatchError, match=f"{item.key}_B03.tif: file is missing"):
        _write(ben_v1_copy, tmp_path / "out", strict=True)


def test_resume_skips_finished_shards_and_reproduces_bytes(ben_v1, tmp_path) -> None:
    out = tmp_path / "out"
    first = _write(ben_v1, out)
    tars = sorted(out.glob("*.tar"))
    content = {p.name: p.read_bytes() for p in tars}
    index = (out / "index.json").read_bytes()
    os.utime(tars[0], (1, 1))  # a marker: skipped shards are not touched
    again = _write(ben_v1, out)
    assert again["shards"] == {"total": 4, "written": 0, "skipped": 4}
    assert tars[0].stat().st_mtime == 1 and (out / "index.json").read_bytes() == index
    assert again["written"] == first["written"]

    # An interrupted run: one shard is gone (and a stale temp file lies around).
    tars[1].unlink()
    (out / f".{tars[1].name}.abc.tmp").write_bytes(b"half")
    resumed = _write(ben_v1, out)
    assert resumed["shards"] == {"total": 4, "written": 1, "skipped": 3}
    assert {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))} == content
    assert (out / "index.json").read_bytes() == index


def test_plan_is_deterministic_and_mixes_order() -> None:
    class Item:
        def __init__(self, key: str, split: str) -> None:
            self.key, self.split = key, split

    items = [Item(f"p{i:03d}", "train") for i in range(10)] + [Item("v0", "val")]
    plan = plan_shards(items, shard_size=4, seed=0)
    again = plan_shards(list(reversed(items)), shard_size=4, seed=0)
    assert [(s.name, [i.key for i in s.items]) for s in plan] == [(s.name, [i.key for i in s.items]) for s in again]
    assert [s.name for s in plan] == ["train-000000.tar", "train-000001.tar", "train-000002.tar", "val-000000.tar"]
    assert [i.key for s in plan[:3] for i in s.items] != sorted(f"p{i:03d}" for i in range(10))
    with pytest.raises(ValueError, match="more than once"):
        plan_shards(items + [Item("p001", "train")], 4)
