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
import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geodino.data.shards.format import SampleParts, group_bands
from geodino.data.sources import PatchError
from geodino.data.sources.raster import band_id, grid_georef, place_bands, read_band

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


def _file_name(band: str) -> str:
    # The release spells bands without the leading zero ("B2"), which a missing file is named by.
    return f"B{int(band[1:3])}{band[3:]}" if band[1:3].isdigit() else band


def _band_files(folder: Path, key: str) -> dict[str, Path]:
    """The band files of a season folder by band; two spellings of one band (``B2.tif`` beside
    ``B02.tif``) are a :class:`PatchError`: which one is meant cannot be guessed."""
    files: dict[str, Path] = {}
    for path in sorted(p for p in folder.glob("*") if p.suffix.lower() in (".tif", ".tiff")):
        band = band_id(path.stem)  # B1, b01, B01 are B01; b8a, B08A are B8A
        if band in files:
            raise PatchError(key, str(path), f"{files[band].name} and {path.name} both hold band {band}")
        files[band] = path
    return files


def _date(season: str) -> datetime.date | None:
    """The first acquisition date in a season folder's name (S2 ``20200612T101031_..._T32TMM``,
    S1 ``S1A_IW_GRDH_1SDV_20200611T170436_...``), if any."""
    match = re.search(r"(?<!\d)(\d{8})(?=T|_|$)", season)
    try:
        return datetime.datetime.strptime(match.group(1), "%Y%m%d").date() if match else None
    except ValueError:
        return None


def _pair_seasons(s2: list[str], s1: list[str]) -> list[tuple[str | None, str | None]]:
    """S2 and S1 season folders of one location, paired. Equal counts pair in date order, as the
    release does. Otherwise, when every name holds its date, each pair is the closest in date
    still free, and the rest stay alone (a missing season no longer shifts every later pair onto
    the wrong dates); without dates, by position."""
    dates2, dates1 = [_date(s) for s in s2], [_date(s) for s in s1]
    if len(s2) == len(s1) or None in dates2 + dates1:
        return [(s2[i] if i < len(s2) else None, s1[i] if i < len(s1) else None) for i in range(max(len(s2), len(s1)))]
    gaps = sorted((abs((d2 - d1).days), i, j) for i, d2 in enumerate(dates2) for j, d1 in enumerate(dates1))
    pairs: dict[int, int] = {}
    for _, i, j in gaps:
        if i not in pairs and j not in pairs.values():
            pairs[i] = j
    out: list[tuple[str | None, str | None]] = [(s2[i], s1[pairs[i]] if i in pairs else None) for i in range(len(s2))]
    return out + [(None, s1[j]) for j in range(len(s1)) if j not in pairs.values()]


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
    s2_locations = _subdirs(root / s2_name)
    for location in sorted(set(_subdirs(root / "s1")) - set(s2_locations)):  # said, not passed over
        rejects.append({"patch": location, "split": "train", "file": str(root / "s1" / location),
                        "reason": f"location has S1 seasons but no {s2_name}/ folder"})
    for location in s2_locations:
        s2_seasons = _subdirs(root / s2_name / location)
        s1_seasons = _subdirs(root / "s1" / location)
        for i, (s2_season, s1_season) in enumerate(_pair_seasons(s2_seasons, s1_seasons)):
            key = f"{location}_{i}"
            if s2_season is None or s1_season is None:
                lacking, alone = ("S2", f"s1/{location}/{s1_season}") if s2_season is None \
                    else ("S1", f"{s2_name}/{location}/{s2_season}")
                rejects.append({"patch": key, "split": "train", "file": str(root / alone),
                                "reason": f"no {lacking} season to pair with (S2 has {len(s2_seasons)}, "
                                          f"S1 has {len(s1_seasons)})"})
                continue
            samples.append(SSL4EOSample(key, "train", location, str(root / s2_name / location / s2_season),
                                        str(root / "s1" / location / s1_season), product))
    return samples, rejects


def read_sample(s: SSL4EOSample) -> SampleParts:
    """One (location, season) pair: S2 bands then S1 VH, VV as stored, on B02's grid."""
    s2_dir, s1_dir = Path(s.s2_dir), Path(s.s1_dir)
    s2_files, s1_files = _band_files(s2_dir, s.key), _band_files(s1_dir, s.key)
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
