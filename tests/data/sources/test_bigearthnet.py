"""BigEarthNet v1/v2 reading: values, band order, resampling, labels, masks and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F

from geodino.data.sources import PatchError
from geodino.data.sources import bigearthnet as ben
from geodino.data.sources import bigearthnet_labels as L


def expected_image(s2_dir: Path, s1_dir: Path, s2: str, s1: str) -> np.ndarray:
    """The 14 bands recomputed independently: rasterio reads, bilinear align_corners=False."""
    bands = []
    for band in ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]:
        with rasterio.open(s2_dir / f"{s2}_{band}.tif") as src:
            a = torch.from_numpy(src.read(1).astype(np.float32))
        if a.shape != (120, 120):
            a = F.interpolate(a[None, None], size=(120, 120), mode="bilinear", align_corners=False)[0, 0]
        bands.append(a.numpy())
    for band in ["VH", "VV"]:
        with rasterio.open(s1_dir / f"{s1}_{band}.tif") as src:
            bands.append(src.read(1))
    return np.stack(bands)


def test_v1_values_band_order_and_meta(ben_v1, decode) -> None:
    patches, rejects = ben.list_v1(ben_v1["s2_root"], ben_v1["s1_root"], ben_v1["split_csvs"])
    assert not rejects and len(patches) == 4
    assert sorted(p.split for p in patches) == ["test", "train", "train", "val"]
    p = patches[0]
    parts = ben.read_patch(p)
    # Stored as read: one group per (size, dtype), no resampling before the decoder.
    assert parts.grid == (120, 120)
    assert {g.bands: (g.array.dtype.name, g.array.shape[1:]) for g in parts.image} == {
        ("B01", "B09"): ("uint16", (20, 20)),
        ("B02", "B03", "B04", "B08"): ("uint16", (120, 120)),
        ("B05", "B06", "B07", "B8A", "B11", "B12"): ("uint16", (60, 60)),
        ("VH", "VV"): ("float32", (120, 120)),
    }
    sample = decode(parts)
    image = sample["image"]
    assert image.dtype == np.float32 and image.shape == (14, 120, 120)
    assert sample["meta"]["bands"] == list(ben.S2_BANDS) + ["VH", "VV"]
    want = expected_image(Path(p.s2_dir), Path(p.s1_dir), p.key, p.s1_name)
    # Every band equals what the reader produced before it stopped resampling: 10 m bands and SAR
    # copied exactly, 20/60 m bands the same bilinear upsampling, computed here independently.
    np.testing.assert_array_equal(image, want)
    with rasterio.open(Path(p.s1_dir) / f"{p.s1_name}_VH.tif") as src:
        np.testing.assert_array_equal(image[12], src.read(1))  # VH comes before VV by name
        assert sample["meta"]["crs"] == "EPSG:32633"
    sar = image[12:]
    assert (sar < 0).mean() > 0.99 and not np.allclose(sar, np.round(sar))
    assert sample["meta"]["transform"][0] == 10.0 and sample["meta"]["s1_patch"] == p.s1_name
    # The 60 m band upsampled stays within its source range (bilinear never overshoots).
    with rasterio.open(Path(p.s2_dir) / f"{p.key}_B01.tif") as src:
        b01 = src.read(1)
    assert b01.min() <= image[0].min() and image[0].max() <= b01.max()
    # The map-style dataset gives the same image the shards decode to.
    item = ben.BigEarthNetDataset([p])[0]
    assert item["image"].dtype == torch.float32 and item["key"] == p.key
    np.testing.assert_array_equal(item["image"].numpy(), image)


def test_v1_labels_from_json(ben_v1, ben_fixtures) -> None:
    patches, _ = ben.list_v1(ben_v1["s2_root"], ben_v1["s1_root"], ben_v1["split_csvs"])
    for p in patches:
        meta = json.loads((Path(p.s2_dir) / f"{p.key}_labels_metadata.json").read_text())
        parts = ben.read_patch(p)
        want43, want19 = L.labels_from_names(meta["labels"], "43")
        np.testing.assert_array_equal(parts.labels43, want43)
        np.testing.assert_array_equal(parts.labels19, want19)
        assert parts.mask is None


def test_v1_pairs_through_s1_json_without_csvs(ben_v1) -> None:
    patches, rejects = ben.list_v1(ben_v1["s2_root"], ben_v1["s1_root"])
    assert not rejects and {p.split for p in patches} == {"all"}
    assert {p.key: p.s1_name for p in patches} == ben_v1["pairs"]


def test_v2_labels_mask_and_flags(ben_v2, decode) -> None:
    patches, rejects = ben.list_v2(ben_v2["s2_root"], ben_v2["s1_root"], ben_v2["metadata"],
                                   ben_v2["reference_maps"])
    assert not rejects and [p.split for p in patches] == ["train", "val", "test", "test"]
    rows = {r["patch_id"]: r for r in ben_v2["rows"]}
    for p in patches:
        parts = ben.read_patch(p)
        row = rows[p.key]
        assert decode(parts)["image"].shape == (14, 120, 120)
        assert [L.CLASSES_19[i] for i in np.flatnonzero(parts.labels19)] == row["labels"]
        with rasterio.open(p.reference_map) as src:
            codes = src.read(1)
        np.testing.assert_array_equal(parts.corine, codes)
        assert parts.corine.dtype == np.uint16 and parts.mask.dtype == np.uint8
        for code in np.unique(codes):
            assert np.all(parts.mask[codes == code] == L.corine_lookup_19()[code])
        present = {L.CLASSES_43[i] for i in np.flatnonzero(parts.labels43)}
        assert present == {L.CLASSES_43[L.CODES_43.index(c)] for c in np.unique(codes) if c in L.CODES_43}
        assert parts.meta["contains_seasonal_snow"] == row["contains_seasonal_snow"]
        assert parts.meta["country"] == "Austria" and parts.meta["s1_patch"] == row["s1_name"]
    # Patch 0 paints 122 (roads, a dropped label) in one quadrant: no class there.
    first = ben.read_patch(patches[0])
    assert (first.mask[:60, 60:] == L.NO_CLASS).all() and (first.mask[:60, :60] == 0).all()


def _v1_patch(ben_v1_copy) -> ben.BigEarthNetPatch:
    patches, _ = ben.list_v1(ben_v1_copy["s2_root"], ben_v1_copy["s1_root"], ben_v1_copy["split_csvs"])
    return sorted(patches, key=lambda p: p.key)[0]


def test_missing_band_is_named(ben_v1_copy) -> None:
    p = _v1_patch(ben_v1_copy)
    path = Path(p.s2_dir) / f"{p.key}_B8A.tif"
    path.unlink()
    with pytest.raises(PatchError, match="B8A.tif.*missing") as err:
        ben.read_patch(p)
    assert err.value.file == str(path) and err.value.patch == p.key


def test_corrupt_band_is_named(ben_v1_copy) -> None:
    p = _v1_patch(ben_v1_copy)
    (Path(p.s2_dir) / f"{p.key}_B05.tif").write_bytes(b"II*\x00 this is not a tiff")
    with pytest.raises(PatchError, match="B05.tif.*unreadable"):
        ben.read_patch(p)


def test_nan_band_and_shifted_footprint_are_named(ben_v1_copy, ben_fixtures) -> None:
    p = _v1_patch(ben_v1_copy)
    vv = np.full((120, 120), -12.5, dtype=np.float32)
    vv[3, 4] = np.nan
    ben_fixtures.write_band(Path(p.s1_dir) / f"{p.s1_name}_VV.tif", vv, (400000.0, 5600000.0))
    with pytest.raises(PatchError, match="VV.tif.*non-finite"):
        ben.read_patch(p)
    # B02 at half the pixel count over the same 1.2 km is fine; 20 m off to the east is not.
    ben_fixtures.write_band(Path(p.s1_dir) / f"{p.s1_name}_VV.tif", np.full((120, 120), -12.5, np.float32),
                            (400000.0, 5600000.0))
    ben_fixtures.write_band(Path(p.s2_dir) / f"{p.key}_B02.tif", np.ones((60, 60), np.uint16), (400000.0, 5600000.0))
    ben.read_patch(p)
    ben_fixtures.write_band(Path(p.s2_dir) / f"{p.key}_B03.tif", np.ones((120, 120), np.uint16), (400020.0, 5600000.0))
    with pytest.raises(PatchError, match=r"B03.tif: footprint of B03 \(EPSG:32633 bounds \(400020, 5598800, 401220, "
                                         r"5600000\)\) disagrees with the reference band .*_B02.tif \(EPSG:32633 "
                                         r"bounds \(400000, 5598800, 401200, 5600000\)\)"):
        ben.read_patch(p)


def test_unknown_label_is_rejected_with_its_name(ben_v1_copy) -> None:
    p = _v1_patch(ben_v1_copy)
    path = Path(p.s2_dir) / f"{p.key}_labels_metadata.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "labels": ["Pastures", "Moon dust"]}))
    with pytest.raises(PatchError, match="Moon dust") as err:
        ben.read_patch(p)
    assert err.value.file == str(path)


def test_v2_split_values_that_name_no_split_are_rejects(ben_v2, tmp_path) -> None:
    """"train " made a shard named 'train -000000.tar' that no run reads; null made 'nan', 'dev' 'dev'."""
    import pandas as pd

    table = pd.read_parquet(ben_v2["metadata"])
    table["split"] = table["split"].astype(object)
    table.loc[0, "split"], table.loc[1, "split"], table.loc[2, "split"] = "train ", None, "dev"
    metadata = tmp_path / "metadata.parquet"
    table.to_parquet(metadata)
    patches, rejects = ben.list_v2(ben_v2["s2_root"], ben_v2["s1_root"], metadata, ben_v2["reference_maps"])
    assert {p.split for p in patches} <= {"train", "val", "test"}
    assert table.loc[0, "patch_id"] in {p.key for p in patches}  # "train " is train
    reasons = {r["patch"]: r["reason"] for r in rejects}
    assert "is not train, val (validation) or test" in reasons[table.loc[1, "patch_id"]]
    assert "'dev'" in reasons[table.loc[2, "patch_id"]]
