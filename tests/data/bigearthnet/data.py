#!/usr/bin/env python3
"""Make tiny BigEarthNet v1 and v2 trees in the real on-disk format, for tests and benchmarks.

Every band is a georeferenced GeoTIFF (EPSG:32633) at its native size, S2 uint16, S1 float32 dB
(negative, fractional); v1 has label JSONs and split CSVs, v2 a ``metadata.parquet`` and
reference maps of CORINE codes. The content is random but seeded, so trees are reproducible.

Two more trees have the shapes of torchgeo's test data (written here from scratch): a v1 tree
where every band is 2×2 px over one shared EPSG:4326 extent, whose 4th S1 folder holds files
named after another patch, and a v2 tree where every band is 120×120 and S2 and S1 are int16.

    python tests/data/bigearthnet/data.py OUT_DIR [--version 1|2|both|torchgeo] [--patches N]
"""

from __future__ import annotations

import argparse
import csv
import json
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

S2_BANDS = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
            "B8A": 20, "B09": 60, "B11": 20, "B12": 20}
CRS = "EPSG:32633"
EXTENT_M = 1200

# Label sets cycled over patches: multi-label, dropped labels, CLC spellings ("Peat bogs").
V1_LABELS = [
    ["Continuous urban fabric", "Airports", "Sea and ocean"],
    ["Non-irrigated arable land", "Pastures"],
    ["Peat bogs", "Transitional woodland-shrub", "Bare rock"],
    ["Coniferous forest", "Mixed forest", "Water bodies", "Rice fields"],
]
# v2 reference maps are painted with these CLC codes (quadrants); labels follow from them.
V2_CODES = [[111, 122, 523, 523], [211, 231, 211, 231], [412, 324, 332, 999], [312, 313, 512, 213]]


def write_geotiff(path: Path, array: np.ndarray, crs: str | None, transform: Affine | None) -> None:
    """One single-band GeoTIFF; ``crs``/``transform`` None writes a file without georeferencing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    georef = {} if crs is None else {"crs": crs, "transform": transform}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # intended when crs is None
        with rasterio.open(path, "w", driver="GTiff", height=array.shape[0], width=array.shape[1],
                           count=1, dtype=array.dtype, **georef) as dst:
            dst.write(array, 1)


def write_band(path: Path, array: np.ndarray, origin: tuple[float, float]) -> None:
    """One single-band GeoTIFF whose pixel size makes it cover the patch's 1.2 km extent."""
    pixel = EXTENT_M / array.shape[-1]
    write_geotiff(path, array, CRS, Affine(pixel, 0.0, origin[0], 0.0, -pixel, origin[1]))


def s2_array(rng: np.random.Generator, band: str) -> np.ndarray:
    size = 120 * 10 // S2_BANDS[band]
    base = rng.integers(200, 4000)
    smooth = np.add.outer(np.linspace(0, 1500, size), np.linspace(0, 800, size))
    return (base + smooth + rng.integers(0, 300, (size, size))).astype(np.uint16)


def sar_array(rng: np.random.Generator, mean_db: float) -> np.ndarray:
    return (mean_db + rng.normal(0.0, 2.5, (120, 120))).astype(np.float32)


def _write_s2(folder: Path, name: str, rng: np.random.Generator, origin: tuple[float, float]) -> None:
    for band in S2_BANDS:
        write_band(folder / f"{name}_{band}.tif", s2_array(rng, band), origin)


def _write_s1(folder: Path, name: str, rng: np.random.Generator, origin: tuple[float, float]) -> None:
    write_band(folder / f"{name}_VV.tif", sar_array(rng, -11.5), origin)
    write_band(folder / f"{name}_VH.tif", sar_array(rng, -18.25), origin)


def _origin(i: int) -> tuple[float, float]:
    return 400000.0 + 1200.0 * (i % 50), 5600000.0 - 1200.0 * (i // 50)


def write_v1(root: str | Path, patches: int = 4, seed: int = 0, splits: bool = True) -> dict:
    """A v1 tree under ``root``; returns its paths and patch names (S2 → S1)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    s2_root, s1_root = root / "BigEarthNet-v1.0", root / "BigEarthNet-S1-v1.0"
    pairs = {}
    for i in range(patches):
        x, y = 10 + i // 40, 20 + i % 40
        s2 = f"S2A_MSIL2A_20170613T101031_{x}_{y}"
        s1 = f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{x}_{y}"
        pairs[s2] = s1
        labels = V1_LABELS[i % len(V1_LABELS)]
        origin = _origin(i)
        _write_s2(s2_root / s2, s2, rng, origin)
        _write_s1(s1_root / s1, s1, rng, origin)
        common = {"labels": labels, "coordinates": {"ulx": origin[0], "uly": origin[1],
                                                     "lrx": origin[0] + EXTENT_M, "lry": origin[1] - EXTENT_M}}
        (s2_root / s2 / f"{s2}_labels_metadata.json").write_text(json.dumps(
            {**common, "projection": CRS, "tile_source": "S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP",
             "acquisition_date": "2017-06-13 10:10:31"}))
        (s1_root / s1 / f"{s1}_labels_metadata.json").write_text(json.dumps(
            {**common, "corresponding_s2_patch": s2, "scene_source": "S1A_IW_GRDH_1SDV_20170613T165043"}))
    csvs = []
    if splits:
        names = list(pairs)
        n_train, n_test = max(1, len(names) // 2), 1 if len(names) >= 3 else 0
        cut = {"train": names[:n_train], "val": names[n_train:len(names) - n_test],
               "test": names[len(names) - n_test:]}
        for split, members in cut.items():
            path = root / f"{split}.csv"
            with open(path, "w", newline="") as f:
                csv.writer(f).writerows([(s2, pairs[s2]) for s2 in members])
            csvs.append(path)
    return {"s2_root": s2_root, "s1_root": s1_root, "split_csvs": csvs, "pairs": pairs}


def write_v2(root: str | Path, patches: int = 4, seed: int = 1) -> dict:
    """A v2 (reBEN) tree under ``root`` with ``metadata.parquet`` and reference maps."""
    import pandas as pd

    from geodino.data.sources import bigearthnet_labels as L

    root = Path(root)
    rng = np.random.default_rng(seed)
    s2_root, s1_root, maps = root / "BigEarthNet-S2", root / "BigEarthNet-S1", root / "Reference_Maps"
    tile = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
    scene = "S1A_IW_GRDH_1SDV_20170613T165043"
    rows = []
    for i in range(patches):
        x, y = 26 + i // 40, 57 + i % 40
        s2, s1 = f"{tile}_{x}_{y}", f"{scene}_33UUP_{x}_{y}"
        origin = _origin(i)
        _write_s2(s2_root / tile / s2, s2, rng, origin)
        _write_s1(s1_root / scene / s1, s1, rng, origin)
        codes = V2_CODES[i % len(V2_CODES)]
        ref = np.empty((120, 120), dtype=np.uint16)
        ref[:60, :60], ref[:60, 60:], ref[60:, :60], ref[60:, 60:] = codes
        write_band(maps / tile / s2 / f"{s2}_reference_map.tif", ref, origin)
        names19 = sorted({L.MAP_43_TO_19[L.CLASSES_43[L.CODES_43.index(c)]] for c in codes
                          if c in L.CODES_43} - {None}, key=L.CLASSES_19.index)
        rows.append({"patch_id": s2, "labels": names19, "split": ["train", "validation", "test"][min(i, 2)],
                     "country": "Austria", "s1_name": s1, "contains_seasonal_snow": i == 1,
                     "contains_cloud_or_shadow": False})
    metadata = root / "metadata.parquet"
    pd.DataFrame(rows).to_parquet(metadata)
    return {"s2_root": s2_root, "s1_root": s1_root, "metadata": metadata, "reference_maps": maps,
            "rows": rows}


# -- trees shaped like torchgeo's test data ---------------------------------------------------------
TG_S2 = "S2A_MSIL2A_20170613T101031_61_{}"
TG_S1 = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_{}"
TG_MISNAMED = "_41"  # the 4th S1 folder's files carry this extra suffix after the folder's name


def write_v1_torchgeo_like(root: str | Path, seed: int = 2) -> dict:
    """Four v1 pairs, every band 2x2 px over the same 2°x2° EPSG:4326 extent (S2 uint16, S1 float32),
    label JSONs with empty coordinates, and torchgeo's split file names (``bigearthnet-<split>.csv``).
    The 4th S1 folder ``..._61_42`` holds ``..._61_42_41_VH.tif``/``_VV.tif``/``_labels_metadata.json``:
    the files are named after another patch than their folder."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    s2_root, s1_root = root / "BigEarthNet-v1.0", root / "BigEarthNet-S1-v1.0"
    transform = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 1.0)
    pairs = {}
    for i, n in enumerate((39, 40, 41, 42)):
        s2, s1 = TG_S2.format(n), TG_S1.format(n)
        pairs[s2] = s1
        for band in S2_BANDS:
            write_geotiff(s2_root / s2 / f"{s2}_{band}.tif", rng.integers(0, 10000, (2, 2)).astype(np.uint16),
                          "EPSG:4326", transform)
        files = s1 + (TG_MISNAMED if n == 42 else "")
        for band in ("VH", "VV"):
            write_geotiff(s1_root / s1 / f"{files}_{band}.tif", (-15 + rng.normal(0, 3, (2, 2))).astype(np.float32),
                          "EPSG:4326", transform)
        common = {"labels": V1_LABELS[i % len(V1_LABELS)],
                  "coordinates": {"ulx": 0, "uly": 0, "lrx": 0, "lry": 0}, "projection": ""}
        (s2_root / s2 / f"{s2}_labels_metadata.json").write_text(json.dumps(
            {**common, "tile_source": "", "acquisition_date": ""}))
        (s1_root / s1 / f"{files}_labels_metadata.json").write_text(json.dumps(
            {**common, "corresponding_s2_patch": s2, "scene_source": "", "acquisition_time": ""}))
    names = list(pairs)
    csvs = []
    for split, members in (("train", names[:2]), ("val", names[2:3]), ("test", names[3:])):
        path = root / f"bigearthnet-{split}.csv"
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([(s2, pairs[s2]) for s2 in members])
        csvs.append(path)
    return {"s2_root": s2_root, "s1_root": s1_root, "split_csvs": csvs, "pairs": pairs,
            "misnamed": names[3]}


def write_v2_torchgeo_like(root: str | Path, seed: int = 3) -> dict:
    """Four v2 patches where every band is 120x120 int16 (S2 DN 0..9999, S1 whole dB -25..-1), all on
    one UTM grid given as a PROJ string, reference maps of uint16 codes, and a ``metadata.parquet``
    with only patch_id, s1_name, split (``val``, not ``validation``) and 19-class labels."""
    import pandas as pd

    root = Path(root)
    rng = np.random.default_rng(seed)
    crs = "+proj=utm +zone=32 +datum=WGS84 +units=m +no_defs"
    transform = Affine(10.0, 0.0, 0.0, 0.0, -10.0, 0.0)
    s2_root, s1_root, maps = root / "BigEarthNet-S2", root / "BigEarthNet-S1", root / "Reference_Maps"
    patches = [("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP", "26_57", "S1A_IW_GRDH_1SDV_20170613T165043", "33UUP_61_39",
                "train", ["Urban fabric", "Pastures"], [111, 231]),
               ("S2A_MSIL2A_20170614T102021_N9999_R122_T32TQT", "45_38", "S1A_IW_GRDH_1SDV_20170614T165154", "32TQT_71_84",
                "train", ["Broad-leaved forest", "Mixed forest"], [311, 313]),
               ("S2B_MSIL2A_20170615T102019_N9999_R122_T32TNS", "45_23", "S1A_IW_GRDH_1SDV_20170615T170156", "32TNS_77_12",
                "val", ["Arable land", "Inland waters"], [211, 511]),
               ("S2A_MSIL2A_20170618T101021_N9999_R022_T32TQR", "89_34", "S1A_IW_GRDH_1SDV_20170618T165722", "32TQR_92_45",
                "test", ["Coniferous forest"], [312])]
    rows = []
    for tile, cell, scene, s1_cell, split, labels, codes in patches:
        s2, s1 = f"{tile}_{cell}", f"{scene}_{s1_cell}"
        for band in S2_BANDS:
            write_geotiff(s2_root / tile / s2 / f"{s2}_{band}.tif",
                          rng.integers(0, 10000, (120, 120)).astype(np.int16), crs, transform)
        for band in ("VV", "VH"):
            write_geotiff(s1_root / scene / s1 / f"{s1}_{band}.tif",
                          rng.integers(-25, 0, (120, 120)).astype(np.int16), crs, transform)
        write_geotiff(maps / tile / s2 / f"{s2}_reference_map.tif",
                      rng.choice(codes, (120, 120)).astype(np.uint16), crs, transform)
        rows.append({"patch_id": s2, "s1_name": s1, "split": split, "labels": labels})
    metadata = root / "metadata.parquet"
    pd.DataFrame(rows).to_parquet(metadata)
    return {"s2_root": s2_root, "s1_root": s1_root, "metadata": metadata, "reference_maps": maps, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--version", choices=["1", "2", "both", "torchgeo"], default="both")
    parser.add_argument("--patches", type=int, default=4)
    args = parser.parse_args()
    if args.version in ("1", "both"):
        print(write_v1(args.out / "v1", args.patches)["s2_root"])
    if args.version in ("2", "both"):
        print(write_v2(args.out / "v2", args.patches)["s2_root"])
    if args.version == "torchgeo":
        print(write_v1_torchgeo_like(args.out / "torchgeo-v1")["s2_root"])
        print(write_v2_torchgeo_like(args.out / "torchgeo-v2")["s2_root"])


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the label tables live in geodino
    main()
