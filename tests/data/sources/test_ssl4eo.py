"""SSL4EO-S12 reading: season pairing, band order, resampling of coarse bands, exact SAR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F

from geodino.data.sources import ssl4eo


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
def test_values_and_band_order(ssl4eo_tree, product, count) -> None:
    samples, _ = ssl4eo.list_samples(ssl4eo_tree, product)
    s = samples[1]
    parts = ssl4eo.read_sample(s)
    bands = list(ssl4eo.PRODUCTS[product][1]) + ["VH", "VV"]
    assert parts.meta["bands"] == bands and parts.image.shape == (count, 264, 264)
    assert parts.meta["s2_season"] == Path(s.s2_dir).name and parts.meta["s1_season"] == Path(s.s1_dir).name
    for i, band in enumerate(bands):
        folder = Path(s.s1_dir if band in ("VH", "VV") else s.s2_dir)
        name = band if band in ("VH", "VV", "B8A") else f"B{int(band[1:])}"
        with rasterio.open(folder / f"{name}.tif") as src:
            source = src.read(1).astype(np.float32)
        if source.shape != (264, 264):
            source = F.interpolate(torch.from_numpy(source)[None, None], size=(264, 264), mode="bilinear",
                                   align_corners=False)[0, 0].numpy()
        np.testing.assert_allclose(parts.image[i], source, rtol=0, atol=1e-3, err_msg=band)
    assert not np.allclose(parts.image[-1], np.round(parts.image[-1]))  # dB values keep their fractions


def test_unknown_product(ssl4eo_tree) -> None:
    with pytest.raises(ValueError, match="product"):
        ssl4eo.list_samples(ssl4eo_tree, "l3")
