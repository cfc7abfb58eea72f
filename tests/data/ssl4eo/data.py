#!/usr/bin/env python3
"""Make a tiny SSL4EO-S12 tree in the real on-disk format (s1/, s2a/, s2c/ per location/season).

Bands are georeferenced GeoTIFFs: S2 uint16 at native size (10 m 264 px, 20 m 132 px, 60 m 44 px),
S1 float32 dB. Season folder names are product-like timestamps, as in the release.

    python tests/data/ssl4eo/data.py OUT_DIR [--locations N] [--seasons K]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

RESOLUTION = {"B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10, "B8A": 20,
              "B9": 60, "B10": 60, "B11": 20, "B12": 20}
GRID = 264


def _write(path: Path, array: np.ndarray, origin: tuple[float, float]) -> None:
    pixel = GRID * 10 / array.shape[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=array.shape[0], width=array.shape[1], count=1,
                       dtype=array.dtype, crs="EPSG:32632",
                       transform=Affine(pixel, 0.0, origin[0], 0.0, -pixel, origin[1])) as dst:
        dst.write(array, 1)


def write_ssl4eo(root: str | Path, locations: int = 2, seasons: int = 4, seed: int = 0,
                 s1_seasons: int | None = None) -> dict:
    """Write the tree; ``s1_seasons`` < ``seasons`` leaves S2 seasons without an S1 partner."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    dates = ["20200307T101021", "20200611T101031", "20200905T101029", "20201209T101321"]
    for loc in range(locations):
        location = f"{loc:07d}"
        origin = (500000.0 + 3000.0 * loc, 5300000.0)
        for k in range(seasons):
            s2_folder = f"{dates[k % 4]}_{dates[k % 4]}_T32TMM"
            for product, bands in (("s2c", RESOLUTION), ("s2a", [b for b in RESOLUTION if b != "B10"])):
                for band in bands:
                    size = GRID * 10 // RESOLUTION[band]
                    array = rng.integers(0, 10000, (size, size)).astype(np.uint16)
                    _write(root / product / location / s2_folder / f"{band}.tif", array, origin)
            if k < (seasons if s1_seasons is None else s1_seasons):
                s1_folder = f"S1A_IW_GRDH_1SDV_{dates[k % 4][:8]}T170436_{dates[k % 4][:8]}T170501_031024"
                for band, mean in (("VV", -12.0), ("VH", -19.0)):
                    array = (mean + rng.normal(0, 3, (GRID, GRID))).astype(np.float32)
                    _write(root / "s1" / location / s1_folder / f"{band}.tif", array, origin)
    return {"root": root}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--locations", type=int, default=2)
    parser.add_argument("--seasons", type=int, default=4)
    args = parser.parse_args()
    print(write_ssl4eo(args.out, args.locations, args.seasons)["root"])


if __name__ == "__main__":
    main()
