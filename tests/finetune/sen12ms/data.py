"""Write a tiny SEN12MS tree in the layout torchgeo's ``SEN12MS`` reads (and the real one has):

    root/ROIs1158_spring/{s1,s2,lc}_<scene>/ROIs1158_spring_{s1,s2,lc}_<scene>_p<patch>.tif
    root/ROIs1868_summer/ root/ROIs1970_fall/ root/ROIs2017_winter/   (the other seasons)
    root/train_list.txt, root/test_list.txt                           (one patch file name per line)

S1 patches are float32 dB (VV, VH), S2 uint16 (13 bands B01..B12 with B10), LC uint16 with the
IGBP class (1-17) in band 1. Run as a script to regenerate: ``python data.py OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SEASON = "ROIs1158_spring"
OTHER_SEASONS = ("ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter")


def _write(path: Path, array: np.ndarray) -> None:
    import rasterio
    from rasterio.transform import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", height=array.shape[1], width=array.shape[2], count=array.shape[0],
                   dtype=array.dtype, crs="EPSG:32632", transform=Affine(10, 0, 500000, 0, -10, 5000000))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)


def write_sen12ms(root: Path, train: int = 6, test: int = 2, size: int = 32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    root = Path(root)
    names = []
    for patch in range(train + test):
        stem = f"{SEASON}_{{}}_1_p{patch}.tif"
        lc = np.zeros((4, size, size), np.uint16)
        # Two land-cover regions, a left and a right one, from the IGBP codes 1-17.
        left, right = rng.choice(np.arange(1, 18), size=2, replace=False)
        lc[0, :, : size // 2], lc[0, :, size // 2:] = left, right
        lc[1:] = 1
        s1 = rng.normal(-15, 3, size=(2, size, size)).astype(np.float32)
        s2 = rng.integers(0, 4000, size=(13, size, size)).astype(np.uint16)
        for source, array in (("lc", lc), ("s1", s1), ("s2", s2)):
            _write(root / SEASON / f"{source}_1" / stem.format(source), array)
        names.append(stem.format("lc"))
    for season in OTHER_SEASONS:
        (root / season).mkdir(parents=True, exist_ok=True)
    (root / "train_list.txt").write_text("\n".join(names[:train]) + "\n")
    (root / "test_list.txt").write_text("\n".join(names[train:]) + "\n")
    return {"root": root, "train": names[:train], "test": names[train:]}


if __name__ == "__main__":
    print(write_sen12ms(Path(sys.argv[1]))["root"])
