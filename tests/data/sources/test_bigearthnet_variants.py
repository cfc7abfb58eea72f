"""BigEarthNet copies that differ from the archives: torchgeo-shaped trees (2 px v1 bands, 120 px
int16 v2 bands, a misnamed S1 folder), bands placed by georeferencing, other dtypes, malformed
labels, S2 patches without an S1 partner."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.errors import NotGeoreferencedWarning

from geodino.cli import main
from geodino.data.shards.format import expand_shards
from geodino.data.shards.read import iter_samples
from geodino.data.sources import PatchError
from geodino.data.sources import bigearthnet as ben


def _upsampled(path: Path, size: int = 120) -> np.ndarray:
    """A band file read with rasterio and upsampled on its own (the reference computation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # some tests write such files on purpose
        with rasterio.open(path) as src:
            a = torch.from_numpy(src.read(1).astype(np.float32))
    if a.shape != (size, size):
        a = F.interpolate(a[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    return a.numpy()


def _shard(argv: list[str], out: Path) -> tuple[dict, list[dict], dict]:
    assert main(["shard", "bigearthnet", *argv, "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    text = (out / "rejects.jsonl").read_text() if (out / "rejects.jsonl").exists() else ""
    rejects = [json.loads(line) for line in text.splitlines()]
    return summary, rejects, {s["key"]: s for s in iter_samples(expand_shards(out))}


def test_torchgeo_v1_tree_converts_three_of_four_pairs(ben_tg_v1, tmp_path) -> None:
    summary, rejects, samples = _shard(
        ["--s2-root", str(ben_tg_v1["s2_root"]), "--s1-root", str(ben_tg_v1["s1_root"]),
         "--split-csv", *map(str, ben_tg_v1["split_csvs"])], tmp_path / "out")
    assert summary["written"] == {"train": 2, "val": 1, "test": 0}
    assert summary["rejected"] == {"test": 1}
    # The 4th pair's S1 files are named after another patch: the reject says which file is
    # missing and what the folder holds instead.
    (reject,) = rejects
    s2 = ben_tg_v1["misnamed"]
    s1 = ben_tg_v1["pairs"][s2]
    assert reject["patch"] == s2 and reject["split"] == "test"
    assert reject["file"] == str(Path(ben_tg_v1["s1_root"]) / s1 / f"{s1}_VH.tif")
    assert "missing" in reject["reason"] and f"{s1}_41_VH.tif" in reject["reason"]
    # 2x2 px bands over the patch become the 120x120 grid by the one bilinear method.
    key = sorted(samples)[0]
    image = samples[key]["image"]
    assert image.shape == (14, 120, 120)
    s2_dir, s1_dir = Path(ben_tg_v1["s2_root"]) / key, Path(ben_tg_v1["s1_root"]) / ben_tg_v1["pairs"][key]
    for i, band in enumerate(ben.BANDS):
        folder, name = (s1_dir, ben_tg_v1["pairs"][key]) if band in ("VH", "VV") else (s2_dir, key)
        np.testing.assert_array_equal(image[i], _upsampled(folder / f"{name}_{band}.tif"), err_msg=band)
    assert samples[key]["meta"]["crs"] == "EPSG:4326"
    # The 120 px grid over the 2-degree footprint.
    assert samples[key]["meta"]["transform"] == [2 / 120, 0.0, 0.0, 0.0, -2 / 120, 1.0]


def test_torchgeo_v1_tree_without_csvs_names_the_unpaired_patch(ben_tg_v1) -> None:
    patches, rejects = ben.list_v1(ben_tg_v1["s2_root"], ben_tg_v1["s1_root"])
    s2 = ben_tg_v1["misnamed"]
    s1 = ben_tg_v1["pairs"][s2]
    assert sorted(p.key for p in patches) == sorted(k for k in ben_tg_v1["pairs"] if k != s2)
    by_patch = {r["patch"]: r for r in rejects}
    assert set(by_patch) == {s1, s2}
    assert "no Sentinel-1 partner" in by_patch[s2]["reason"] and by_patch[s2]["split"] == "all"
    assert by_patch[s2]["file"] == str(Path(ben_tg_v1["s2_root"]) / s2)
    assert f"{s1}_41_labels_metadata.json" in by_patch[s1]["reason"]


def test_s2_patch_without_s1_partner_is_a_reject(ben_v1_copy) -> None:
    import shutil

    s2 = sorted(ben_v1_copy["pairs"])[0]
    shutil.rmtree(Path(ben_v1_copy["s1_root"]) / ben_v1_copy["pairs"][s2])
    patches, rejects = ben.list_v1(ben_v1_copy["s2_root"], ben_v1_copy["s1_root"])
    assert len(patches) == 3 and s2 not in {p.key for p in patches}
    assert [(r["patch"], r["reason"].split(":")[0]) for r in rejects] == [(s2, "no Sentinel-1 partner")]


def test_torchgeo_v2_tree_converts_every_patch_with_int16_values_exact(ben_tg_v2, tmp_path) -> None:
    summary, rejects, samples = _shard(
        ["--version", "2", "--s2-root", str(ben_tg_v2["s2_root"]), "--s1-root", str(ben_tg_v2["s1_root"]),
         "--reference-maps", str(ben_tg_v2["reference_maps"])], tmp_path / "out")
    assert not rejects and summary["written"] == {"train": 2, "val": 1, "test": 1}
    assert sorted(samples) == sorted(r["patch_id"] for r in ben_tg_v2["rows"])
    row = ben_tg_v2["rows"][2]
    sample = samples[row["patch_id"]]
    tile = row["patch_id"].rsplit("_", 2)[0]
    scene = row["s1_name"].rsplit("_", 3)[0]
    for i, band in enumerate(ben.BANDS):
        folder = (Path(ben_tg_v2["s1_root"]) / scene / row["s1_name"] if band in ("VH", "VV")
                  else Path(ben_tg_v2["s2_root"]) / tile / row["patch_id"])
        name = row["s1_name"] if band in ("VH", "VV") else row["patch_id"]
        with rasterio.open(folder / f"{name}_{band}.tif") as src:
            stored = src.read(1)
        assert stored.dtype == np.int16
        np.testing.assert_array_equal(sample["image"][i], stored.astype(np.float32), err_msg=band)
    assert sample["image"][12:].max() < 0 and sample["meta"]["split"] == "val"
    assert sample["meta"]["crs"] == "EPSG:32632" and sample["mask"].shape == (120, 120)


def _patch(tree: dict) -> ben.BigEarthNetPatch:
    patches, _ = ben.list_v1(tree["s2_root"], tree["s1_root"], tree["split_csvs"])
    return sorted(patches, key=lambda p: p.key)[0]  # origin (400000, 5600000) in the fixture


def test_band_without_georeferencing_is_placed_by_size(ben_v1_copy, ben_fixtures, decode) -> None:
    p = _patch(ben_v1_copy)
    b05 = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40)
    path = Path(p.s2_dir) / f"{p.key}_B05.tif"
    ben_fixtures.write_geotiff(path, b05, None, None)  # 40 px divide the 120 px grid: a 30 m band
    image = decode(ben.read_patch(p))["image"]
    np.testing.assert_array_equal(image[ben.BANDS.index("B05")], _upsampled(path))
    ben_fixtures.write_geotiff(path, np.zeros((50, 50), np.uint16), None, None)
    with pytest.raises(PatchError, match=r"B05.tif: B05 is 50x50 px with no georeferencing.*does not divide the "
                                         r"120x120 grid") as err:
        ben.read_patch(p)
    assert err.value.file == str(path)


def test_band_in_another_crs_is_rejected(ben_v1_copy, ben_fixtures) -> None:
    from rasterio.transform import Affine

    p = _patch(ben_v1_copy)
    ben_fixtures.write_geotiff(Path(p.s1_dir) / f"{p.s1_name}_VH.tif", np.zeros((120, 120), np.float32),
                               "EPSG:32632", Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 5600000.0))
    with pytest.raises(PatchError, match=r"VH.tif: footprint of VH \(EPSG:32632 .*reference band .*EPSG:32633"):
        ben.read_patch(p)


def test_footprint_within_half_a_pixel_is_the_same(ben_v1_copy, ben_fixtures) -> None:
    p = _patch(ben_v1_copy)
    ben_fixtures.write_band(Path(p.s2_dir) / f"{p.key}_B11.tif", np.ones((60, 60), np.uint16), (400004.0, 5599996.0))
    ben.read_patch(p)
    ben_fixtures.write_band(Path(p.s2_dir) / f"{p.key}_B11.tif", np.ones((60, 60), np.uint16), (400006.0, 5600000.0))
    with pytest.raises(PatchError, match="B11.tif: footprint of B11"):
        ben.read_patch(p)


def test_copy_dtypes_are_read_exactly(ben_v1_copy, ben_fixtures, decode) -> None:
    p = _patch(ben_v1_copy)
    rng = np.random.default_rng(5)
    arrays = {
        ("s2", "B02"): rng.integers(-1000, 20000, (120, 120)).astype(np.int16),
        ("s2", "B03"): rng.integers(0, 65535, (120, 120)).astype(np.uint16),
        ("s2", "B04"): rng.integers(0, 255, (120, 120)).astype(np.uint8),
        ("s2", "B08"): rng.integers(-(2 ** 24), 2 ** 24, (120, 120)).astype(np.int32),
        ("s1", "VH"): (rng.normal(-18.0, 3.0, (120, 120))).astype(np.float32),
        ("s1", "VV"): rng.normal(-11.0, 3.0, (120, 120)) + 1e-9,  # float64
    }
    for (mod, band), array in arrays.items():
        folder, name = (p.s1_dir, p.s1_name) if mod == "s1" else (p.s2_dir, p.key)
        ben_fixtures.write_band(Path(folder) / f"{name}_{band}.tif", array, (400000.0, 5600000.0))
    parts = ben.read_patch(p)
    dtypes = {b: g.array.dtype.name for g in parts.image for b in g.bands}
    assert {b: dtypes[b] for _, b in arrays} == {"B02": "int16", "B03": "uint16", "B04": "uint8",
                                                   "B08": "float32", "VH": "float32", "VV": "float32"}
    image = decode(parts)["image"]
    for (_, band), array in arrays.items():
        np.testing.assert_array_equal(image[ben.BANDS.index(band)], array.astype(np.float32), err_msg=band)
    # int32 beyond 2^24 has no exact float32: refused, naming the file.
    big = np.full((120, 120), 2 ** 24 + 1, dtype=np.int32)
    ben_fixtures.write_band(Path(p.s2_dir) / f"{p.key}_B08.tif", big, (400000.0, 5600000.0))
    with pytest.raises(PatchError, match=r"B08.tif: int32 values reach 16777217, beyond 2\^24"):
        ben.read_patch(p)


def test_labels_string_in_v1_json_is_named(ben_v1_copy) -> None:
    p = _patch(ben_v1_copy)
    path = Path(p.s2_dir) / f"{p.key}_labels_metadata.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "labels": "Pastures"}))
    with pytest.raises(PatchError, match="labels must be a list of names, got str 'Pastures'") as err:
        ben.read_patch(p)
    assert err.value.file == str(path)


def test_labels_string_in_v2_metadata_is_a_reject(ben_tg_v2, tmp_path) -> None:
    table = pd.read_parquet(ben_tg_v2["metadata"])
    table["labels"] = ["; ".join(names) for names in table["labels"]]
    metadata = tmp_path / "metadata.parquet"
    table.to_parquet(metadata)
    patches, rejects = ben.list_v2(ben_tg_v2["s2_root"], ben_tg_v2["s1_root"], metadata)
    assert not patches and len(rejects) == 4
    assert rejects[0]["file"] == str(metadata)
    assert rejects[0]["reason"] == "labels must be a list of names, got str 'Urban fabric; Pastures'"
