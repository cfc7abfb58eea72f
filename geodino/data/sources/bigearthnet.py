"""BigEarthNet v1 (BigEarthNet-MM) and v2 (reBEN) readers: paired Sentinel-2 + Sentinel-1 patches.

A sample is 14 bands on one 120×120 grid at 10 m, S2 ``B01 B02 B03 B04 B05 B06 B07 B08 B8A B09
B11 B12`` then S1 ``VH VV`` (the DINO-MM order). The 20 m and 60 m bands are upsampled with
:func:`geodino.data.sources.raster.resample_to` (bilinear, ``align_corners=False``); the 10 m
bands and SAR are copied exactly. Values stay raw float32: S2 digital numbers as float, SAR
backscatter in dB untouched (torchgeo's reader casts to int, truncating dB values, and we keep
VH before VV by name, never by file order).

Layouts (found by patch name; only the folders named here are assumed):

- v1: ``<s2_root>/<S2 patch>/<patch>_Bxx.tif`` + ``<patch>_labels_metadata.json`` (``labels``:
  43-class names), ``<s1_root>/<S1 patch>/<patch>_VV.tif|_VH.tif`` + a JSON whose
  ``corresponding_s2_patch`` names the S2 partner. Split CSVs hold ``s2_name,s1_name`` rows; the
  split is the CSV's file stem. Without CSVs every S1 JSON pairs a patch into split ``all``.
- v2: ``<s2_root>/<tile>/<patch>/``, ``<s1_root>/<scene>/<patch>/``, ``metadata.parquet``
  (patch_id, labels (19-class names), split, s1_name, country, snow/cloud flags) and optionally
  ``<reference_maps>/<tile>/<patch>/<patch>_reference_map.tif`` (uint16 CLC codes per pixel),
  which becomes ``mask.npy`` (19-class index, 255 = none), ``corine.npy`` (raw codes) and the
  43-class labels (classes present in the map).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from geodino.data.shards.format import SampleParts
from geodino.data.sources import PatchError
from geodino.data.sources import bigearthnet_labels as L
from geodino.data.sources.raster import grid_of, read_band, resample_to

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S1_BANDS = ("VH", "VV")
BANDS = S2_BANDS + S1_BANDS
RESOLUTION_M = {"B01": 60, "B09": 60, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20,
                "B02": 10, "B03": 10, "B04": 10, "B08": 10, "VH": 10, "VV": 10}
GRID = 120  # pixels of the 10 m grid (1.2 km patches)
SPLIT_NAMES = {"validation": "val"}  # v2 calls it "validation"; shards use the v1 CSV stems


@dataclass
class BigEarthNetPatch:
    """Everything a worker needs to read one patch (picklable)."""

    key: str  # the S2 patch name
    split: str
    version: int
    s2_dir: str
    s1_dir: str
    s1_name: str
    labels: tuple[str, ...] | None = None  # v2 (from metadata); v1 reads the S2 JSON
    labels_file: str = ""  # where ``labels`` came from, for error messages
    reference_map: str | None = None
    extra_meta: dict[str, Any] = field(default_factory=dict)


def _reject(patch: str, split: str, file: str, reason: str) -> dict[str, str]:
    return {"patch": patch, "split": split, "file": file, "reason": reason}


# -- listing ---------------------------------------------------------------------------------------
def list_v1(
    s2_root: str | Path, s1_root: str | Path, split_csvs: Sequence[str | Path] = ()
) -> tuple[list[BigEarthNetPatch], list[dict[str, str]]]:
    """Patches of a BigEarthNet v1 tree and the problems found while pairing them."""
    s2_root, s1_root = Path(s2_root), Path(s1_root)
    pairs: list[tuple[str, str, str]] = []  # (split, s2, s1)
    rejects: list[dict[str, str]] = []
    if split_csvs:
        for path in split_csvs:
            with open(path, newline="") as f:
                for row in csv.reader(f):
                    if not row or not row[0].strip():
                        continue
                    if len(row) < 2:
                        raise ValueError(f"{path}: row {row} should be 's2_name,s1_name'")
                    pairs.append((Path(path).stem, row[0].strip(), row[1].strip()))
    else:
        for entry in sorted(os.scandir(s1_root), key=lambda e: e.name):
            if not entry.is_dir():
                continue
            meta_path = Path(entry.path) / f"{entry.name}_labels_metadata.json"
            try:
                with open(meta_path) as f:
                    pairs.append(("all", json.load(f)["corresponding_s2_patch"], entry.name))
            except (OSError, ValueError, KeyError) as err:
                rejects.append(_reject(entry.name, "all", str(meta_path),
                                       f"cannot pair S1 patch: {type(err).__name__}: {err}"))
    patches = []
    for split, s2, s1 in pairs:
        s2_dir, s1_dir = s2_root / s2, s1_root / s1
        missing = next((d for d in (s2_dir, s1_dir) if not d.is_dir()), None)
        if missing is not None:
            rejects.append(_reject(s2, split, str(missing), "patch folder is missing"))
            continue
        patches.append(BigEarthNetPatch(s2, split, 1, str(s2_dir), str(s1_dir), s1))
    return patches, rejects


def _patch_dirs(root: Path) -> dict[str, Path]:
    """``<root>/<any>/<patch>/`` folders by patch name (v2 groups patches by tile or scene)."""
    found: dict[str, Path] = {}
    for group in os.scandir(root):
        if group.is_dir():
            for entry in os.scandir(group.path):
                if entry.is_dir():
                    found[entry.name] = Path(entry.path)
    return found


def list_v2(
    s2_root: str | Path,
    s1_root: str | Path,
    metadata: str | Path,
    reference_maps: str | Path | None = None,
) -> tuple[list[BigEarthNetPatch], list[dict[str, str]]]:
    """Patches listed in a BigEarthNet v2 ``metadata.parquet`` and the ones whose folders are missing."""
    import pandas as pd

    table = pd.read_parquet(metadata)
    required = {"patch_id", "labels", "split", "s1_name"}
    if not required <= set(table.columns):
        raise ValueError(f"{metadata}: needs columns {sorted(required)}, has {list(table.columns)}")
    s2_dirs, s1_dirs = _patch_dirs(Path(s2_root)), _patch_dirs(Path(s1_root))
    map_dirs = _patch_dirs(Path(reference_maps)) if reference_maps else {}
    patches, rejects = [], []
    for row in table.itertuples(index=False):
        key, s1 = str(row.patch_id), str(row.s1_name)
        split = SPLIT_NAMES.get(str(row.split), str(row.split))
        if key not in s2_dirs or s1 not in s1_dirs:
            root, name = (s2_root, key) if key not in s2_dirs else (s1_root, s1)
            rejects.append(_reject(key, split, f"{root}/*/{name}", "patch folder not found"))
            continue
        ref = None
        if reference_maps:
            if key not in map_dirs:
                rejects.append(_reject(key, split, f"{reference_maps}/*/{key}", "reference map folder not found"))
                continue
            ref = str(map_dirs[key] / f"{key}_reference_map.tif")
        extra = {}
        for column in ("country", "contains_seasonal_snow", "contains_cloud_or_shadow"):
            if column in table.columns:
                value = getattr(row, column)
                extra[column] = value.item() if hasattr(value, "item") else value
        patches.append(BigEarthNetPatch(
            key, split, 2, str(s2_dirs[key]), str(s1_dirs[s1]), s1,
            labels=tuple(str(n) for n in row.labels), labels_file=str(metadata),
            reference_map=ref, extra_meta=extra,
        ))
    return patches, rejects


# -- reading ---------------------------------------------------------------------------------------
def _v1_labels(p: BigEarthNetPatch) -> tuple[list[str], dict[str, Any]]:
    path = Path(p.s2_dir) / f"{p.key}_labels_metadata.json"
    if not path.is_file():
        raise PatchError(p.key, str(path), "file is missing")
    try:
        with open(path) as f:
            meta = json.load(f)
        return list(meta["labels"]), {k: meta[k] for k in ("acquisition_date", "tile_source") if k in meta}
    except (ValueError, KeyError, TypeError) as err:
        raise PatchError(p.key, str(path), f"bad labels metadata: {type(err).__name__}: {err}") from None


def read_patch(p: BigEarthNetPatch) -> SampleParts:
    """Read, check and resample one patch; :class:`PatchError` names the file at fault."""
    s2_dir, s1_dir = Path(p.s2_dir), Path(p.s1_dir)
    bands = []
    for band in S2_BANDS:
        size = GRID * 10 // RESOLUTION_M[band]
        bands.append(read_band(s2_dir / f"{p.key}_{band}.tif", p.key, (size, size)))
    for band in S1_BANDS:
        bands.append(read_band(s1_dir / f"{p.s1_name}_{band}.tif", p.key, (GRID, GRID)))
    image = np.stack(resample_to(bands, (GRID, GRID))).astype(np.float32, copy=False)

    meta: dict[str, Any] = {"source": f"bigearthnet-v{p.version}", "bands": list(BANDS),
                            "s2_patch": p.key, "s1_patch": p.s1_name, "split": p.split}
    meta.update(grid_of(s2_dir / f"{p.key}_B02.tif", p.key))
    meta.update(p.extra_meta)
    try:
        if p.version == 1:
            names, json_meta = _v1_labels(p)
            meta.update(json_meta)
            labels43, labels19 = L.labels_from_names(names, "43")
        else:
            names = list(p.labels or ())
            try:
                labels43, labels19 = L.labels_from_names(names, "19")
            except L.UnknownLabelError:
                labels43, labels19 = L.labels_from_names(names, "43")
    except L.UnknownLabelError as err:
        where = p.labels_file if p.version == 2 else str(s2_dir / f"{p.key}_labels_metadata.json")
        raise PatchError(p.key, where, str(err)) from None

    mask = corine = None
    if p.reference_map is not None:
        corine = read_band(Path(p.reference_map), p.key, (GRID, GRID), as_float=False)
        if not np.issubdtype(corine.dtype, np.integer):
            raise PatchError(p.key, p.reference_map, f"reference map has dtype {corine.dtype}, expected uint16")
        corine = corine.astype(np.uint16)
        mask = L.corine_lookup_19()[corine]
        if labels43 is None:
            labels43 = L.labels43_from_codes(corine)
    return SampleParts(key=p.key, image=image, meta=meta, labels19=labels19, labels43=labels43,
                       mask=mask, corine=corine)


class BigEarthNetDataset:
    """Map-style access to raw BigEarthNet patches (a notebook, or the loader benchmark's baseline).

    ``dataset[i]`` is ``{"image": float32 tensor [14,120,120], "labels19": uint8 tensor, "key"}``,
    read with exactly the same code as the shard conversion.
    """

    def __init__(self, patches: Sequence[BigEarthNetPatch]) -> None:
        self.patches = list(patches)

    @classmethod
    def from_v1(cls, s2_root: str | Path, s1_root: str | Path, split_csvs: Sequence[str | Path] = ()) -> BigEarthNetDataset:
        return cls(list_v1(s2_root, s1_root, split_csvs)[0])

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        parts = read_patch(self.patches[index])
        return {"image": torch.from_numpy(parts.image), "labels19": torch.from_numpy(parts.labels19),
                "key": parts.key}
