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


def test_v1_values_band_order_and_meta(ben_v1) -> None:
    patches, rejects = ben.list_v1(ben_v1["s2_root"], ben_v1["s1_root"], ben_v1["split_csvs"])
    assert not rejects and len(patches) == 4
    assert sorted(p.split for p in patches) == ["test", "train", "train", "val"]
    p = patches[0]
    parts = ben.read_patch(p)
    assert parts.image.dtype == np.float32 and parts.image.shape == (14, 120, 120)
    assert parts.meta["bands"] == list(ben.S2_BANDS) + ["VH", "VV"]
    want = expected_image(Path(p.s2_dir), Path(p.s1_dir), p.key, p.s1_name)
    np.testing.assert_allclose(parts.image, want, rtol=0, atol=1e-3)
    # 10 m bands and SAR are exact copies; VH comes before VV by name.
    np.testing.assert_array_equal(parts.image[[1, 2, 3, 7, 12, 13]], want[[1, 2, 3, 7, 12, 13]])
    with rasterio.open(Path(p.s1_dir) / f"{p.s1_name}_VH.tif") as src:
        np.testing.assert_array_equal(parts.image[12], src.read(1))
        assert parts.meta["crs"] == "EPSG:32633"
    sar = parts.image[12:]
    assert (sar < 0).mean() > 0.99 and not np.allclose(sar, np.round(sar))
    assert parts.meta["transform"][0] == 10.0 and parts.meta["s1_patch"] == p.s1_name
    # The 60 m band upsampled stays within its source range (bilinear never overshoots).
    with rasterio.open(Path(p.s2_dir) / f"{p.key}_B01.tif") as src:
        b01 = src.read(1)
    assert b01.min() <= parts.image[0].min() and parts.image[0].max() <= b01.max()


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


def test_v2_labels_mask_and_flags(ben_v2) -> None:
    patches, rejects = ben.list_v2(ben_v2["s2_root"], ben_v2["s1_root"], ben_v2["metadata"],
                                   ben_v2["reference_maps"])
    assert not rejects and [p.split for p in patches] == ["train", "val", "test", "test"]
    rows = {r["patch_id"]: r for r in ben_v2["rows"]}
    for p in patches:
        parts = ben.read_patch(p)
        row = rows[p.key]
        assert parts.image.shape == (14, 120, 120)
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


def test_nan_band_and_wrong_shape_are_named(ben_v1_copy, ben_fixtures) -> None:
    p = _v1_patch(ben_v1_copy)
    vv = np.full((120, 120), -12.5, dtype=np.float32)
    vv[3, 4] = np.nan
    ben_fixtures.write_band(Path(p.s1_dir) / f"{p.s1_name}_VV.tif", vv, (400000.0, 5600000.0))
    with pytest.raises(PatchError, match="VV.tif.*non-finite"):
        ben.read_patch(p)
    ben_fixtures.write_band(Path(p.s2_dir) / f"{p.key}_B02.tif", np.zeros((60, 60), np.uint16), (400000.0, 5600000.0))
    with pytest.raises(PatchError, match=r"B02.tif.*shape \(60, 60\), expected \(120, 120\)"):
        ben.read_patch(p)


def test_unknown_label_is_rejected_with_its_name(ben_v1_copy) -> None:
    p = _v1_patch(ben_v1_copy)
    path = Path(p.s2_dir) / f"{p.key}_labels_metadata.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "labels": ["Pastures", "Moon dust"]}))
    with pytest.raises(PatchError, match="Moon dust") as err:
        ben.read_patch(p)
    assert err.value.file == str(path)
