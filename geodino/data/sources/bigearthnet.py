"""BigEarthNet v1 (BigEarthNet-MM) and v2 (reBEN) readers: paired Sentinel-2 + Sentinel-1 patches.

A sample is 14 bands on one 120×120 grid at 10 m, S2 ``B01 B02 B03 B04 B05 B06 B07 B08 B8A B09
B11 B12`` then S1 ``VH VV`` (the DINO-MM order; every band is found by its file name, never by
file order). Bands are stored as read: each at its stored size, integers (uint16 DN, int16 in
some copies) as integers, SAR dB as float32, grouped by size and dtype
(:func:`geodino.data.shards.format.group_bands`); decoding resamples them onto the grid
(bilinear, ``align_corners=False``), so the 10 m bands and SAR come back bit-exact and the 20 m /
60 m bands upsampled. torchgeo's reader casts to int32, truncating dB values; we never round.

Which files belong to a patch is decided by georeferencing, not pixel counts
(:func:`geodino.data.sources.raster.place_bands`, reference band S2 B02): the archives store S2
at 120/60/20 px, copies at 120 px for every band, torchgeo's test data at 2 px.

Layouts (found by patch name; only the folders named here are assumed):

- v1: ``<s2_root>/<S2 patch>/<patch>_Bxx.tif`` + ``<patch>_labels_metadata.json`` (``labels``:
  43-class names), ``<s1_root>/<S1 patch>/<patch>_VV.tif|_VH.tif`` + a JSON whose
  ``corresponding_s2_patch`` names the S2 partner. Split CSVs hold ``s2_name,s1_name`` rows (a
  header row is skipped); the split comes from the file name (``train.csv``,
  ``bigearthnet-val.csv``, ``BigEarthNet_test.csv`` ...; :func:`geodino.data.shards.format.split_name`).
  Without CSVs every S1 JSON pairs a patch into split ``all``, and S2 patches no JSON names are
  rejected.
- v2: ``<s2_root>/<tile>/<patch>/``, ``<s1_root>/<scene>/<patch>/``, ``metadata.parquet``
  (patch_id, labels (19-class names), split, s1_name, country, snow/cloud flags) and optionally
  ``<reference_maps>/<tile>/<patch>/<patch>_reference_map.tif`` (uint16 CLC codes per pixel),
  which becomes ``mask.npy`` (19-class index, 255 = none), ``corine.npy`` (raw codes) and the
  43-class labels (classes present in the map).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from geodino.data.shards.format import SPLITS, PatchError, SampleParts, group_bands, split_name
from geodino.data.sources import bigearthnet_labels as L
from geodino.data.sources.raster import grid_georef, missing_reason, place_bands, read_band

log = logging.getLogger(__name__)

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S1_BANDS = ("VH", "VV")
BANDS = S2_BANDS + S1_BANDS
RESOLUTION_M = {"B01": 60, "B09": 60, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20, "B12": 20,
                "B02": 10, "B03": 10, "B04": 10, "B08": 10, "VH": 10, "VV": 10}
GRID = 120  # pixels of the 10 m grid (1.2 km patches)
GRID_SHAPE = (GRID, GRID)
REFERENCE_BAND = "B02"  # the footprint every other band must cover
# Every BigEarthNet patch name ends in the patch's row and column in its tile ("..._61_39"); a
# CSV's first row whose first cell does not is a header ("s2_name,s1_name", "patch_id,...").
_PATCH_NAME = re.compile(r".*_\d+_\d+$")


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
def csv_split(path: str | Path) -> str:
    """The split a split CSV holds, from its file name; a name that says none is a ValueError."""
    split = split_name(Path(path).name)
    if split is None:
        raise ValueError(
            f"split CSV {path}: its name does not say which split it holds; name it after one of "
            f"{', '.join(SPLITS)} (e.g. train.csv, bigearthnet-val.csv, BigEarthNet_test.csv; "
            f"'validation' also means val)")
    return split


def csv_names(path: str | Path) -> list[list[str]]:
    """The rows of a list of patch names (a split or exclusion CSV), each cell stripped of blanks
    and of a trailing ``/`` (``ls -p`` output); blank rows left out. UTF-8 with or without the byte
    order mark spreadsheet programs write (``utf-8-sig``): with it, the first name would carry it."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [[cell.strip().rstrip("/") for cell in row] for row in csv.reader(f)]
    return [row for row in rows if row and row[0]]


def _csv_pairs(path: Path, split: str) -> list[tuple[str, str, str]]:
    pairs = []
    for number, row in enumerate(csv_names(path)):
        # Only the first row can be a header; a later odd row is reported as a missing patch.
        if number == 0 and not _PATCH_NAME.match(row[0]):
            log.info("%s: first row %s taken as a header (not a patch name)", path, row)
            continue
        if len(row) < 2:
            raise ValueError(f"{path}: row {row} should be 's2_name,s1_name'")
        pairs.append((split, row[0], row[1]))
    return pairs


def _pair_through_json(s2_root: Path, s1_root: Path) -> tuple[list[tuple[str, str, str]], list[dict[str, str]]]:
    """v1 without split CSVs: each S1 JSON names its S2 partner; S2 patches nobody names are rejects."""
    pairs, rejects = [], []
    for entry in sorted(os.scandir(s1_root), key=lambda e: e.name):
        if not entry.is_dir():
            continue
        meta_path = Path(entry.path) / f"{entry.name}_labels_metadata.json"
        if not meta_path.is_file():
            rejects.append(_reject(entry.name, "all", str(meta_path),
                                   f"cannot pair S1 patch: {missing_reason(meta_path)}"))
            continue
        try:
            with open(meta_path) as f:
                partner = json.load(f)["corresponding_s2_patch"]
            if not isinstance(partner, str) or not partner:
                raise ValueError(f"corresponding_s2_patch is {partner!r}, not a patch name")
        except (OSError, ValueError, KeyError, TypeError) as err:
            rejects.append(_reject(entry.name, "all", str(meta_path),
                                   f"cannot pair S1 patch: {type(err).__name__}: {err}"))
            continue
        pairs.append(("all", partner, entry.name))
    named = {s2 for _, s2, _ in pairs}
    for entry in sorted(os.scandir(s2_root), key=lambda e: e.name):
        if entry.is_dir() and entry.name not in named:
            rejects.append(_reject(entry.name, "all", entry.path,
                                   f"no Sentinel-1 partner: no *_labels_metadata.json under {s1_root} names "
                                   f"it as corresponding_s2_patch"))
    return pairs, rejects


def list_v1(
    s2_root: str | Path, s1_root: str | Path, split_csvs: Sequence[str | Path] = ()
) -> tuple[list[BigEarthNetPatch], list[dict[str, str]]]:
    """Patches of a BigEarthNet v1 tree and the problems found while pairing them."""
    s2_root, s1_root = Path(s2_root), Path(s1_root)
    pairs: list[tuple[str, str, str]] = []  # (split, s2, s1)
    rejects: list[dict[str, str]] = []
    if split_csvs:
        # Every file is looked for, and every name checked, before any is read: a missing or
        # misnamed CSV fails at once.
        missing = [str(path) for path in split_csvs if not Path(path).is_file()]
        if missing:
            raise FileNotFoundError(f"split CSV not found: {', '.join(missing)}")
        splits = [(Path(path), csv_split(path)) for path in split_csvs]
        for path, split in splits:
            found = _csv_pairs(path, split)
            log.info("split CSV %s -> split %s (%d patches)", path, split, len(found))
            pairs.extend(found)
    else:
        pairs, rejects = _pair_through_json(s2_root, s1_root)
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


def label_names(value: Any) -> tuple[str, ...]:
    """A labels value as a tuple of names; anything but a list of strings (notably one string,
    which would otherwise be iterated letter by letter) is a ValueError."""
    if isinstance(value, (list, tuple, np.ndarray)) and all(isinstance(n, str) for n in value):
        return tuple(value)
    shown = repr(value if not isinstance(value, np.ndarray) else value.tolist())
    raise ValueError(f"labels must be a list of names, got {type(value).__name__} "
                     f"{shown[:80] + ('...' if len(shown) > 80 else '')}")


def list_v2(
    s2_root: str | Path,
    s1_root: str | Path,
    metadata: str | Path,
    reference_maps: str | Path | None = None,
) -> tuple[list[BigEarthNetPatch], list[dict[str, str]]]:
    """Patches listed in a BigEarthNet v2 ``metadata.parquet`` and the ones that cannot be read."""
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
        split = split_name(str(row.split).strip())
        if split is None:  # "train ", "dev", a null: a shard of that name would be trained on by nobody
            rejects.append(_reject(key, str(row.split), str(metadata),
                                   f"split {row.split!r} is not train, val (validation) or test"))
            continue
        if key not in s2_dirs or s1 not in s1_dirs:
            root, name = (s2_root, key) if key not in s2_dirs else (s1_root, s1)
            rejects.append(_reject(key, split, f"{root}/*/{name}", "patch folder not found"))
            continue
        try:
            labels = label_names(row.labels)
        except ValueError as err:
            rejects.append(_reject(key, split, str(metadata), str(err)))
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
            labels=labels, labels_file=str(metadata), reference_map=ref, extra_meta=extra,
        ))
    return patches, rejects


# -- reading ---------------------------------------------------------------------------------------
def _v1_labels(p: BigEarthNetPatch) -> tuple[list[str], dict[str, Any]]:
    path = Path(p.s2_dir) / f"{p.key}_labels_metadata.json"
    if not path.is_file():
        raise PatchError(p.key, str(path), missing_reason(path))
    try:
        with open(path) as f:
            meta = json.load(f)
        names = label_names(meta["labels"])
        return list(names), {k: meta[k] for k in ("acquisition_date", "tile_source") if k in meta}
    except (ValueError, KeyError, TypeError) as err:
        raise PatchError(p.key, str(path), f"bad labels metadata: {type(err).__name__}: {err}") from None


def _reference_map(p: BigEarthNetPatch, b02: Any) -> np.ndarray:
    """The map's CLC codes as uint16, checked to lie on the patch's grid."""
    raster = read_band(p.reference_map, p.key)
    place_bands([("reference map", raster)], b02, GRID_SHAPE, p.key)
    codes = raster.array
    if codes.shape != GRID_SHAPE:
        raise PatchError(p.key, p.reference_map, f"reference map is {codes.shape[0]}x{codes.shape[1]} px, the masks "
                                                 f"are {GRID}x{GRID} (one code per 10 m pixel)")
    if codes.dtype.kind == "f" and not np.array_equal(codes, np.round(codes)):
        raise PatchError(p.key, p.reference_map, f"reference map holds non-integer values ({codes.dtype})")
    if codes.size and (codes.min() < 0 or codes.max() > np.iinfo(np.uint16).max):
        raise PatchError(p.key, p.reference_map, f"reference map values {codes.min()}..{codes.max()} are not CLC codes")
    return codes.astype(np.uint16)


def read_patch(p: BigEarthNetPatch) -> SampleParts:
    """Read and check one patch: its 14 bands as stored, grouped; :class:`PatchError` names the
    file at fault (missing, unreadable, non-finite, or covering another footprint)."""
    s2_dir, s1_dir = Path(p.s2_dir), Path(p.s1_dir)
    rasters = [(band, read_band(s2_dir / f"{p.key}_{band}.tif", p.key)) for band in S2_BANDS]
    rasters += [(band, read_band(s1_dir / f"{p.s1_name}_{band}.tif", p.key)) for band in S1_BANDS]
    reference = dict(rasters)[REFERENCE_BAND]
    image = group_bands(place_bands(rasters, reference, GRID_SHAPE, p.key))

    meta: dict[str, Any] = {"source": f"bigearthnet-v{p.version}", "bands": list(BANDS),
                            "s2_patch": p.key, "s1_patch": p.s1_name, "split": p.split}
    meta.update(grid_georef(reference, GRID_SHAPE))
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
        corine = _reference_map(p, reference)
        mask = L.corine_lookup_19()[corine]
        if labels43 is None:
            labels43 = L.labels43_from_codes(corine)
    return SampleParts(key=p.key, image=image, meta=meta, labels19=labels19, labels43=labels43,
                       mask=mask, corine=corine, grid=GRID_SHAPE)


def assembled_image(parts: SampleParts) -> np.ndarray:
    """The float32 [C,H,W] image a shard holding ``parts`` decodes to (through the shard codec
    itself, so the map-style dataset and the shards can never disagree)."""
    from geodino.data.shards.format import decode_sample, encode_sample

    raw = {"__key__": parts.key}
    raw.update((name.split(".", 1)[1], data) for name, data in encode_sample(parts))
    return decode_sample(raw)["image"]


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
        return {"image": torch.from_numpy(assembled_image(parts)), "labels19": torch.from_numpy(parts.labels19),
                "key": parts.key}
