"""SSL4EO-S12 reading: season pairing, band order, bands stored as read and resampled on decode,
exact SAR, bands placed by footprint."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.transform import Affine

from geodino.data.sources import PatchError, ssl4eo


def test_seasons_pair_by_sorted_order_and_unpaired_are_rejected(ssl4eo_tree) -> None:
    samples, rejects = ssl4eo.list_samples(ssl4eo_tree, "l2a")
    # The fixture has 4 S2 seasons but only 3 S1 seasons per location.
    assert [s.key for s in samples] == [f"{loc:07d}_{i}" for loc in range(2) for i in range(3)]
    assert [r["patch"] for r in rejects] == ["0000000_3", "0000001_3"]
    assert "no S1 season" in rejects[0]["reason"]
    for s in samples:
        season = int(s.key.split("_")[1])
        assert Path(s.s2_dir).name == sorted(p.name for p in Path(s.s2_dir).parent.iterdir())[season]
        assert Path(s.s1_dir).name == sorted(p.name for p in Path(s.s1_dir).parent.iterdir())[season]


@pytest.mark.parametrize("product,count", [("l2a", 14), ("l1c", 15)])
def test_values_and_band_order(ssl4eo_tree, product, count, decode) -> None:
    samples, _ = ssl4eo.list_samples(ssl4eo_tree, product)
    s = samples[1]
    parts = ssl4eo.read_sample(s)
    bands = list(ssl4eo.PRODUCTS[product][1]) + ["VH", "VV"]
    # Stored as read: S2 uint16 at 264/132/44 px, SAR float32; the grid is B02's size.
    assert parts.grid == (264, 264)
    assert sorted((g.array.dtype.name, g.array.shape[1]) for g in parts.image) == [
        ("float32", 264), ("uint16", 44), ("uint16", 132), ("uint16", 264)]
    image = decode(parts)["image"]
    assert parts.meta["bands"] == bands and image.shape == (count, 264, 264)
    assert parts.meta["s2_season"] == Path(s.s2_dir).name and parts.meta["s1_season"] == Path(s.s1_dir).name
    for i, band in enumerate(bands):
        folder = Path(s.s1_dir if band in ("VH", "VV") else s.s2_dir)
        name = band if band in ("VH", "VV", "B8A") else f"B{int(band[1:])}"
        with rasterio.open(folder / f"{name}.tif") as src:
            source = src.read(1).astype(np.float32)
        if source.shape != (264, 264):
            source = F.interpolate(torch.from_numpy(source)[None, None], size=(264, 264), mode="bilinear",
                                   align_corners=False)[0, 0].numpy()
        # resampled bands: bilinear in a batch of bands vs alone, rounding may differ by an ulp
        np.testing.assert_allclose(image[i], source, rtol=1e-6, atol=0, err_msg=band)
    assert not np.allclose(image[-1], np.round(image[-1]))  # dB values keep their fractions
    assert parts.meta["crs"] == "EPSG:32632" and parts.meta["transform"][0] == 10.0


def test_unknown_product(ssl4eo_tree) -> None:
    with pytest.raises(ValueError, match="product"):
        ssl4eo.list_samples(ssl4eo_tree, "l3")


def _copy_sample(ssl4eo_tree, tmp_path) -> ssl4eo.SSL4EOSample:
    shutil.copytree(ssl4eo_tree, tmp_path / "tree")
    return ssl4eo.list_samples(tmp_path / "tree", "l2a")[0][0]


def _write(path: Path, array: np.ndarray, origin: tuple[float, float], pixel: float) -> None:
    with rasterio.open(path, "w", driver="GTiff", height=array.shape[0], width=array.shape[1], count=1,
                       dtype=array.dtype, crs="EPSG:32632",
                       transform=Affine(pixel, 0.0, origin[0], 0.0, -pixel, origin[1])) as dst:
        dst.write(array, 1)


def test_bands_are_placed_by_footprint(ssl4eo_tree, tmp_path, decode) -> None:
    s = _copy_sample(ssl4eo_tree, tmp_path)
    origin = (500000.0, 5300000.0)  # location 0 of the fixture
    # A copy storing the 20 m band B05 at 264 px over the same ground (and as int16): accepted as is.
    b05 = (np.arange(264 * 264) % 30000 - 500).reshape(264, 264).astype(np.int16)
    _write(Path(s.s2_dir) / "B5.tif", b05, origin, 10.0)
    parts = ssl4eo.read_sample(s)
    np.testing.assert_array_equal(decode(parts)["image"][parts.meta["bands"].index("B05")], b05.astype(np.float32))
    # An S1 band 30 m to the north covers other ground: rejected, naming the file and both footprints.
    _write(Path(s.s1_dir) / "VV.tif", np.zeros((264, 264), np.float32), (origin[0], origin[1] + 30.0), 10.0)
    with pytest.raises(PatchError, match=r"VV.tif: footprint of VV \(EPSG:32632 bounds \(500000, 5297390, 502640, "
                                         r"5300030\)\) disagrees with the reference band B2.tif \(EPSG:32632 bounds "
                                         r"\(500000, 5297360, 502640, 5300000\)\)"):
        ssl4eo.read_sample(s)


def test_a_missing_season_does_not_shift_the_others_onto_wrong_dates(ssl4eo_tree, tmp_path) -> None:
    """Seasons were paired by position: without the first S1 season, every S2 season was paired
    with the S1 season of the next date. Now the closest dates pair and the lone season is a reject."""
    shutil.copytree(ssl4eo_tree, tmp_path / "tree")
    s1_location = tmp_path / "tree" / "s1" / "0000000"
    shutil.rmtree(sorted(s1_location.iterdir())[0])  # the March S1 season of location 0 (3 of 4 S2 left paired)
    samples, rejects = ssl4eo.list_samples(tmp_path / "tree", "l2a")
    for s in (s for s in samples if s.location == "0000000"):
        assert ssl4eo._date(Path(s.s2_dir).name) == ssl4eo._date(Path(s.s1_dir).name), (s.s2_dir, s.s1_dir)
    lone = [r for r in rejects if r["patch"].startswith("0000000")]
    assert len(lone) == 2 and all("no S1 season" in r["reason"] for r in lone)  # March, and the fixture's 4th
    assert ssl4eo._date("S1A_IW_GRDH_1SDV_20200611T170436_20200611T170501_031024").isoformat() == "2020-06-11"


@pytest.mark.parametrize("spelling", ["b8a", "B08A"])
def test_band_files_in_other_spellings_are_found_and_two_spellings_of_one_band_refused(ssl4eo_tree, tmp_path,
                                                                                        spelling) -> None:
    s = _copy_sample(ssl4eo_tree, tmp_path)
    (Path(s.s2_dir) / "B8A.tif").rename(Path(s.s2_dir) / f"{spelling}.tif")  # was "B8A.tif: file is missing"
    assert ssl4eo.read_sample(s).key == s.key
    shutil.copy(Path(s.s2_dir) / "B2.tif", Path(s.s2_dir) / "B02.tif")  # one was picked at random
    with pytest.raises(PatchError, match=r"B02\.tif and B2\.tif both hold band B02"):
        ssl4eo.read_sample(s)


def test_a_location_with_only_s1_seasons_is_a_reject(ssl4eo_tree, tmp_path) -> None:
    """It was passed over without a word (only the S2 side was listed)."""
    shutil.copytree(ssl4eo_tree, tmp_path / "tree")
    shutil.rmtree(tmp_path / "tree" / "s2a" / "0000001")
    samples, rejects = ssl4eo.list_samples(tmp_path / "tree", "l2a")
    assert {s.location for s in samples} == {"0000000"}
    assert {"patch": "0000001", "split": "train", "file": str(tmp_path / "tree" / "s1" / "0000001"),
            "reason": "location has S1 seasons but no s2a/ folder"} in rejects
