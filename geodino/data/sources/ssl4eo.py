"""SSL4EO-S12 reader: co-located Sentinel-1 / Sentinel-2 time series for pretraining.

Layout: ``<root>/{s1|s2a|s2c}/<7-digit location id>/<season folder>/<band>.tif`` with ``s2c`` =
L1C (13 bands), ``s2a`` = L2A (12 bands, no B10), ``s1`` = GRD VV/VH in dB. Band files are named
``B1.tif``…``B12.tif``/``B8A.tif`` (``B01`` spellings are accepted too). The grid is the B02
band's size (264×264 at 10 m). Bands are stored as read, each at its stored size and in a
lossless dtype, grouped by size and dtype; decoding brings them onto the grid (bilinear,
``align_corners=False``). A band belongs to the sample when its footprint (CRS + bounds) matches
B02's, whatever its pixel count (:func:`geodino.data.sources.raster.place_bands`).

Seasons: each location has four acquisitions per modality whose folder names are timestamps or
product ids, not season labels. The S1 and S2 folders of a location are sorted by name and paired
by position; each pair is one sample keyed ``<id>_<position>``, and ``meta.json`` records both
folder names. Seasons without a partner (one modality has fewer) are rejected, never guessed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geodino.data.shards.format import SampleParts, group_bands
from geodino.data.sources.raster import grid_georef, place_bands, read_band

L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
L1C_BANDS = L2A_BANDS[:10] + ("B10",) + L2A_BANDS[10:]
S1_BANDS = ("VH", "VV")
PRODUCTS = {"l2a": ("s2a", L2A_BANDS), "l1c": ("s2c", L1C_BANDS)}


@dataclass
class SSL4EOSample:
    key: str
    split: str
    location: str
    s2_dir: str
    s1_dir: str
    product: str


def _band_id(file_stem: str) -> str:
    # "B1" and "B01" name the same band; "B8A" stays itself.
    match = re.fullmatch(r"B0*(\d+)(A?)", file_stem.upper())
    return f"B{int(match.group(1)):02d}{match.group(2)}" if match else file_stem.upper()


def _file_name(band: str) -> str:
    # The release spells bands without the leading zero ("B2"), which a missing file is named by.
    return f"B{int(band[1:3])}{band[3:]}" if band[1:3].isdigit() else band


def _band_files(folder: Path) -> dict[str, Path]:
    return {_band_id(p.stem): p for p in folder.glob("*.tif")}


def _subdirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir()) if folder.is_dir() else []


def list_samples(root: str | Path, product: str = "l2a") -> tuple[list[SSL4EOSample], list[dict[str, str]]]:
    """One item per (location, season pair) and rejects for seasons that cannot be paired."""
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of {sorted(PRODUCTS)}, not {product!r}")
    root = Path(root)
    s2_name = PRODUCTS[product][0]
    for folder in (root / s2_name, root / "s1"):
        if not folder.is_dir():
            raise FileNotFoundError(f"SSL4EO-S12 folder {folder} is missing (expected s1/, s2a/ or s2c/ under {root})")
    samples, rejects = [], []
    for location in _subdirs(root / s2_name):
        s2_seasons = _subdirs(root / s2_name / location)
        s1_seasons = _subdirs(root / "s1" / location)
        for i in range(max(len(s2_seasons), len(s1_seasons))):
            key = f"{location}_{i}"
            if i >= len(s2_seasons) or i >= len(s1_seasons):
                lacking = "S2" if i >= len(s2_seasons) else "S1"
                rejects.append({"patch": key, "split": "train", "file": str(root / location),
                                "reason": f"no {lacking} season to pair with (S2 has {len(s2_seasons)}, "
                                          f"S1 has {len(s1_seasons)})"})
                continue
            samples.append(SSL4EOSample(key, "train", location,
                                        str(root / s2_name / location / s2_seasons[i]),
                                        str(root / "s1" / location / s1_seasons[i]), product))
    return samples, rejects


def read_sample(s: SSL4EOSample) -> SampleParts:
    """One (location, season) pair: S2 bands then S1 VH, VV as stored, on B02's grid."""
    s2_dir, s1_dir = Path(s.s2_dir), Path(s.s1_dir)
    s2_files, s1_files = _band_files(s2_dir), _band_files(s1_dir)
    names = PRODUCTS[s.product][1]
    rasters = [(band, read_band(s2_files.get(band, s2_dir / f"{_file_name(band)}.tif"), s.key)) for band in names]
    rasters += [(band, read_band(s1_files.get(band, s1_dir / f"{band}.tif"), s.key)) for band in S1_BANDS]
    reference = dict(rasters)["B02"]
    grid = reference.array.shape
    image = group_bands(place_bands(rasters, reference, grid, s.key))
    meta: dict[str, Any] = {"source": f"ssl4eo-s12-{s.product}", "bands": list(names + S1_BANDS),
                            "location": s.location, "s2_season": s2_dir.name, "s1_season": s1_dir.name,
                            "split": s.split}
    meta.update(grid_georef(reference, grid))
    return SampleParts(key=s.key, image=image, meta=meta, grid=grid)
