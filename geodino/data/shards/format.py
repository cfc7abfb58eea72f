"""The shard format shared by every source: what a sample holds, how it is encoded, where shards live.

A shard is a plain webdataset tar. Each sample is a group of members named ``<key>.<part>``:

===============  ==========================================================================
``image.npy``    float32 [C, H, W] raw values in the card's band order (or ``image.jpg``:
                 the original JPEG bytes of an RGB image, never re-encoded)
``labels19.npy`` uint8 [19] multi-hot (BigEarthNet-19)   ``labels43.npy`` uint8 [43] multi-hot
``label.cls``    ASCII integer class index (single-label data)
``mask.npy``     uint8 [H, W] per-pixel class index, 255 = no class
``corine.npy``   uint16 [H, W] raw CORINE Land Cover codes behind ``mask.npy``
``meta.json``    source names, split, CRS/transform, ``bands`` (always) and source-specific facts
===============  ==========================================================================

Arrays are ``.npy`` so they decode with ``allow_pickle=False``. A shard folder holds
``<split>-000000.tar ...``, ``index.json`` (shards, sample counts, bands, card), ``card.yaml``,
``rejects.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

INDEX_FILE = "index.json"
CARD_FILE = "card.yaml"
REJECTS_FILE = "rejects.jsonl"
SUMMARY_FILE = "summary.json"
ARRAY_PARTS = ("image", "labels19", "labels43", "mask", "corine")


class ShardFormatError(ValueError):
    """A shard sample is malformed or a shard specification matches nothing."""


@dataclass
class SampleParts:
    """One sample before encoding. ``image`` is a float32 [C,H,W] array or JPEG bytes."""

    key: str
    image: np.ndarray | bytes
    meta: dict[str, Any]
    labels19: np.ndarray | None = None
    labels43: np.ndarray | None = None
    label: int | None = None
    mask: np.ndarray | None = None
    corine: np.ndarray | None = None
    extra: dict[str, bytes] = field(default_factory=dict)


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def encode_sample(parts: SampleParts) -> list[tuple[str, bytes]]:
    """The tar members of one sample, ``(name, bytes)`` in a fixed order."""
    if "." in parts.key or "/" in parts.key:
        # webdataset splits a member name at its first dot to find the key.
        raise ShardFormatError(f"sample key {parts.key!r} must not contain '.' or '/'")
    if "bands" not in parts.meta:
        raise ShardFormatError(f"sample {parts.key}: meta must record 'bands'")
    members: list[tuple[str, bytes]] = []
    if isinstance(parts.image, (bytes, bytearray)):
        members.append(("image.jpg", bytes(parts.image)))
    else:
        if parts.image.dtype != np.float32 or parts.image.ndim != 3:
            raise ShardFormatError(f"sample {parts.key}: image must be float32 [C,H,W], got "
                                   f"{parts.image.dtype} {parts.image.shape}")
        members.append(("image.npy", _npy_bytes(parts.image)))
    for name in ARRAY_PARTS[1:]:
        value = getattr(parts, name)
        if value is not None:
            members.append((f"{name}.npy", _npy_bytes(value)))
    if parts.label is not None:
        members.append(("label.cls", str(int(parts.label)).encode()))
    members.append(("meta.json", json.dumps(parts.meta, sort_keys=True).encode()))
    members.extend(sorted(parts.extra.items()))
    return [(f"{parts.key}.{name}", data) for name, data in members]


def add_members(tar: tarfile.TarFile, members: list[tuple[str, bytes]]) -> None:
    """Append an encoded sample. Member headers carry no time or owner, so a shard's bytes depend
    only on its samples: re-running a conversion reproduces identical files."""
    for name, data in members:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))


def decode_sample(raw: dict[str, Any]) -> dict[str, Any]:
    """Decode a webdataset sample (``__key__`` plus member bytes) into numpy arrays and dicts.

    Returns ``{"key", "meta", "image" (ndarray, or bytes for JPEG), ...}`` with the optional parts
    present in the sample; ``label`` is an int.
    """
    out: dict[str, Any] = {"key": raw["__key__"]}
    try:
        if "image.npy" in raw:
            out["image"] = np.load(io.BytesIO(raw["image.npy"]), allow_pickle=False)
        elif "image.jpg" in raw:
            out["image"] = raw["image.jpg"]
        else:
            raise ShardFormatError("no image.npy or image.jpg")
        for name in ARRAY_PARTS[1:]:
            if f"{name}.npy" in raw:
                out[name] = np.load(io.BytesIO(raw[f"{name}.npy"]), allow_pickle=False)
        if "label.cls" in raw:
            out["label"] = int(raw["label.cls"])
        out["meta"] = json.loads(raw["meta.json"]) if "meta.json" in raw else {}
    except (ValueError, KeyError) as err:
        where = raw.get("__url__", "?")
        raise ShardFormatError(f"{where}: sample {raw['__key__']}: {err}") from None
    return out


def image_array(image: np.ndarray | bytes) -> np.ndarray:
    """A decoded sample's image as an array [C,H,W]: arrays as stored, JPEG bytes as float32 RGB in
    [0, 1] at their stored size (for measuring and looking; training resizes with ``load_rgb``)."""
    if not isinstance(image, (bytes, bytearray)):
        return image
    from PIL import Image

    with Image.open(io.BytesIO(image)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0


# -- locating shards ------------------------------------------------------------------------------
def read_index(folder: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        return None
    with open(path) as f:
        return json.load(f)


def expand_shards(spec: str | os.PathLike | Iterable[str], split: str | None = None) -> list[str]:
    """Shard paths of a folder, a tar path, a brace pattern (``dir/train-{000000..000003}.tar``),
    a ``::``-separated list, a glob, or a list of any of these.

    A folder's shards come from its ``index.json`` when there is one (so stale tars from an earlier
    conversion with another ``--shard-size`` are ignored, and shards left empty by rejects are
    skipped), else from ``*.tar``. ``split`` keeps only ``<split>-*.tar``.
    """
    from braceexpand import braceexpand

    if not isinstance(spec, (str, os.PathLike)):
        return [p for item in spec for p in expand_shards(item, split)]
    text = os.fspath(spec)
    if "::" in text:
        return [p for item in text.split("::") for p in expand_shards(item, split)]
    if os.path.isdir(text):
        index = read_index(text)
        if index is not None:
            names = [s["name"] for s in index["shards"] if s["samples"] > 0]
        else:
            names = sorted(p.name for p in Path(text).glob("*.tar"))
        paths = [str(Path(text) / n) for n in names]
    else:
        paths = []
        for item in braceexpand(text):
            paths.extend(sorted(glob.glob(item)) if glob.has_magic(item) else [item])
        missing = [p for p in paths if "://" not in p and not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"shard {missing[0]} does not exist ({len(missing)} missing)")
    if split is not None:
        paths = [p for p in paths if os.path.basename(p).startswith(f"{split}-")]
    if not paths:
        what = f" of split {split!r}" if split else ""
        raise FileNotFoundError(f"no shards{what} found at {text}")
    return paths


def training_shards(spec: str | os.PathLike | Iterable[str], split: str | None = None) -> list[str]:
    """Shards to train on or measure: ``split`` if given (``"all"``: every shard); for a folder
    without ``split``, its train shards when it has any (so validation and test data never leak
    into pretraining or normalisation statistics), else all of them."""
    if split == "all":
        return expand_shards(spec)
    if split is not None:
        return expand_shards(spec, split)
    paths = expand_shards(spec)
    if isinstance(spec, (str, os.PathLike)) and os.path.isdir(spec):
        train = [p for p in paths if os.path.basename(p).startswith("train-")]
        return train or paths
    return paths


def shard_folder(urls: list[str]) -> Path:
    """The folder holding the first shard (where ``index.json`` and ``card.yaml`` live)."""
    return Path(urls[0]).parent


def iter_samples(urls: list[str]) -> Iterator[dict[str, Any]]:
    """Decoded samples of the given shards, in order, in this process (for statistics and
    inspection; training uses :mod:`geodino.data.shards.stream`)."""
    import webdataset as wds

    for raw in wds.tarfile_samples([{"url": u} for u in urls]):
        yield decode_sample(raw)
