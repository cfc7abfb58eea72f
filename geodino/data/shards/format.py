"""The shard format shared by every source: what a sample holds, how it is encoded and decoded,
what makes a sample bad, and where shards live.

A shard is a plain webdataset tar. Each sample is a group of members named ``<key>.<part>``:

===============  ==========================================================================
``image.bands``  format 2: the bands in their stored dtype (uint8/uint16/int16 as stored,
                 floats as float32) and at their stored size, as the raw little-endian bytes of
                 one C-ordered array [c, h, w] per group of bands sharing size and dtype, one
                 group after the other (no header: the bytes are exactly the pixels);
                 ``meta.json`` ``groups`` gives each group's ``bands``, ``dtype`` and ``shape``,
                 and ``grid`` the [H, W] they are resampled onto
``image.npy``    format 1 (still read): float32 [C, H, W] raw values in the card's band order
``image.jpg``    the original JPEG bytes of an RGB image, never re-encoded
``<name>.npy``   any further array: labels and masks, named as the card's ``labels:`` names
                 them, e.g. ``labels19.npy`` uint8 [19] multi-hot (BigEarthNet-19),
                 ``labels43.npy``, ``mask.npy`` uint8 [H, W] per-pixel class (255 = no class),
                 ``corine.npy`` uint16 [H, W] raw CORINE codes behind the mask
``label.cls``    ASCII integer class index (single-label data)
``meta.json``    source names, split, CRS/transform, ``bands`` (always) and source-specific facts
===============  ==========================================================================

Decoding yields a float32 [C, H, W] image in the card's band order: format-2 groups are
converted to float32 (exactly: every integer of uint16/int16 is a float32) and resampled onto the
grid with :func:`resample_bands`, the same bilinear method the readers used to apply at
conversion time, so a format-2 shard decodes to the same values as its format-1 twin. Training
streams skip that step in their workers (``assemble=False``): the groups travel in their stored
dtype and :func:`assemble_batch` converts and resamples a whole batch on its device.

Arrays are ``.npy`` so they decode with ``allow_pickle=False``. A shard folder holds
``<split>-000000.tar ...``, ``index.json`` (shards, sample counts, bands, card), ``card.yaml``,
``rejects.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from geodino.data.bad import SampleError
from geodino.data.shards.remote import file_name as shard_file_name
from geodino.data.shards.remote import is_remote

INDEX_FILE = "index.json"
CARD_FILE = "card.yaml"
REJECTS_FILE = "rejects.jsonl"
SUMMARY_FILE = "summary.json"
IMAGE_PARTS = ("image.bands", "image.npy", "image.jpg")
BANDS_PART = "image.bands"
# Stored dtypes a band group may have: what the archives ship (uint16 DN, int16 copies, uint8
# imagery) kept as is, everything else as float32. All convert to float32 without loss.
GROUP_DTYPES = ("uint8", "uint16", "int16", "float32")
_GROUP_DTYPE_CODES = {np.dtype(d).newbyteorder("<").str for d in GROUP_DTYPES}

# Split names: every spelling a dataset or a copy of it uses maps to one of these.
SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test", "testing": "test"}


class ShardFormatError(ValueError):
    """A shard sample is malformed or a shard specification matches nothing."""


class BadSample(ShardFormatError, SampleError):
    """A sample that cannot be used, naming the shard, the sample key and the reason."""

    container = "shard"


class PatchError(Exception):
    """One patch (or image) of a source dataset cannot be converted; names the file at fault and why.

    The shard writer turns these into lines of ``rejects.jsonl`` (or re-raises them with
    ``--strict``); every other exception is a bug and propagates.
    """

    def __init__(self, patch: str, file: str, reason: str) -> None:
        super().__init__(f"{patch}: {file}: {reason}")
        self.patch = patch
        self.file = file
        self.reason = reason

    def __reduce__(self):  # keep the three fields when crossing a process boundary
        return (PatchError, (self.patch, self.file, self.reason))


def split_name(name: str) -> str | None:
    """The split a file or split name stands for (``train``/``val``/``test``), or None.

    Accepts the names the BigEarthNet lists and their copies use: ``train.csv``,
    ``bigearthnet-train.csv`` (torchgeo), ``BigEarthNet_val.csv``, ``validation`` (reBEN), ...:
    the last ``-``/``_``/``.``-separated word of the stem decides.
    """
    stem = Path(str(name)).name
    for suffix in (".csv", ".txt", ".tsv", ".parquet"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    words = [w for w in stem.replace("-", "_").replace(".", "_").lower().split("_") if w]
    return _SPLIT_ALIASES.get(words[-1]) if words else None


@dataclass
class BandGroup:
    """Bands stored together: same size and dtype, ``array`` [len(bands), h, w]."""

    bands: tuple[str, ...]
    array: np.ndarray


@dataclass
class SampleParts:
    """One sample before encoding. ``image`` is band groups (format 2, with ``grid``), a float32
    [C,H,W] array, or JPEG bytes."""

    key: str
    image: list[BandGroup] | np.ndarray | bytes
    meta: dict[str, Any]
    labels19: np.ndarray | None = None
    labels43: np.ndarray | None = None
    label: int | None = None
    mask: np.ndarray | None = None
    corine: np.ndarray | None = None
    grid: tuple[int, int] | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # any other ``<name>.npy`` part
    extra: dict[str, bytes] = field(default_factory=dict)

    def array_parts(self) -> dict[str, np.ndarray]:
        """Every array part by name: the named fields that are set, then ``arrays``."""
        named = {n: getattr(self, n) for n in ("labels19", "labels43", "mask", "corine")}
        return {**{n: v for n, v in named.items() if v is not None}, **self.arrays}


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def group_bands(bands: list[tuple[str, np.ndarray]]) -> list[BandGroup]:
    """Bands ``(name, 2-D array)`` grouped by (shape, stored dtype), first appearance first; dtypes
    other than :data:`GROUP_DTYPES` become float32 (exact for every integer type up to 16 bits)."""
    groups: dict[tuple, list[tuple[str, np.ndarray]]] = {}
    for name, array in bands:
        dtype = array.dtype.name if array.dtype.name in GROUP_DTYPES else "float32"
        groups.setdefault((array.shape, dtype), []).append((name, array))
    return [BandGroup(tuple(n for n, _ in members), np.stack([a for _, a in members]).astype(dtype, copy=False))
            for (_, dtype), members in groups.items()]


def _encode_image(parts: SampleParts) -> list[tuple[str, bytes]]:
    if isinstance(parts.image, (bytes, bytearray)):
        return [("image.jpg", bytes(parts.image))]
    if isinstance(parts.image, np.ndarray):
        if parts.image.dtype != np.float32 or parts.image.ndim != 3:
            raise ShardFormatError(f"sample {parts.key}: image must be float32 [C,H,W], got "
                                   f"{parts.image.dtype} {parts.image.shape}")
        return [("image.npy", _npy_bytes(parts.image))]
    if parts.grid is None:
        raise ShardFormatError(f"sample {parts.key}: band groups need a grid (H, W)")
    names = [b for g in parts.image for b in g.bands]
    if sorted(names) != sorted(parts.meta["bands"]):
        raise ShardFormatError(f"sample {parts.key}: groups hold bands {names}, meta lists {parts.meta['bands']}")
    chunks, layout = [], []
    for group in parts.image:
        a = group.array
        if a.ndim != 3 or a.shape[0] != len(group.bands) or a.dtype.name not in GROUP_DTYPES:
            raise ShardFormatError(f"sample {parts.key}: group {group.bands} is {a.dtype} {a.shape}")
        little = a.astype(a.dtype.newbyteorder("<"), copy=False)
        chunks.append(np.ascontiguousarray(little).tobytes())
        layout.append({"bands": list(group.bands), "dtype": little.dtype.str, "shape": list(a.shape)})
    parts.meta["groups"] = layout
    parts.meta["grid"] = [int(v) for v in parts.grid]
    return [(BANDS_PART, b"".join(chunks))]


def encode_sample(parts: SampleParts) -> list[tuple[str, bytes]]:
    """The tar members of one sample, ``(name, bytes)`` in a fixed order."""
    if "." in parts.key or "/" in parts.key:
        # webdataset splits a member name at its first dot to find the key.
        raise ShardFormatError(f"sample key {parts.key!r} must not contain '.' or '/'")
    if "bands" not in parts.meta:
        raise ShardFormatError(f"sample {parts.key}: meta must record 'bands'")
    members = _encode_image(parts)
    for name, value in parts.array_parts().items():
        if "." in name or name == "image":
            raise ShardFormatError(f"sample {parts.key}: array part {name!r} must be a plain name, not 'image'")
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


def resample_bands(values, size: tuple[int, int]):
    """``values`` (float32 tensor [B, c, h, w]) brought to ``size`` (H, W) with the one resampling
    method of geodino: bilinear, ``align_corners=False``. A coarse pixel and the fine pixels it
    covers share a footprint, so coarser bands stay co-registered over the patch; edges are
    clamped; bilinear never overshoots the input range (bicubic would, giving negative
    reflectances). Values already at ``size`` are returned as they are (bit-exact)."""
    if tuple(values.shape[-2:]) == tuple(size):
        return values
    import torch.nn.functional as F

    return F.interpolate(values, size=tuple(size), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class SampleSpec:
    """What every decoded sample of a dataset must look like (from its card); None = not checked."""

    bands: tuple[str, ...] | None = None
    grid: tuple[int, int] | None = None
    grid_source: str = "the card"  # where the grid comes from, for messages


def card_spec(card: Any) -> SampleSpec:
    """What the samples of a dataset card must look like: its bands, and its grid when it has one."""
    grid = card.extra.get("grid")
    size = (int(grid["height"]), int(grid["width"])) if isinstance(grid, dict) and "height" in grid else None
    return SampleSpec(bands=tuple(card.band_names), grid=size)


_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_npy_headers: dict[bytes, tuple[np.dtype, tuple[int, ...]]] = {}


def _load_npy(raw: dict[str, Any], part: str) -> np.ndarray:
    """``np.load`` of a member, with the header of version-1 files parsed once per distinct header:
    numpy parses every header with ``ast.literal_eval`` (about 0.1 ms, a tenth of a BigEarthNet
    sample's decode time for its two label arrays), and a shard repeats the same few headers."""
    data = raw[part]
    if data[:8] == _NPY_MAGIC and len(data) >= 10:
        end = 10 + int.from_bytes(data[8:10], "little")
        header = data[10:end]
        parsed = _npy_headers.get(header)
        if parsed is None and len(_npy_headers) < 1024:
            array = np.load(io.BytesIO(data), allow_pickle=False)
            if not array.dtype.hasobject and array.flags.c_contiguous and len(data) - end == array.nbytes:
                _npy_headers[header] = (array.dtype, array.shape)
            return array
        if parsed is not None:
            dtype, shape = parsed
            if len(data) - end != math.prod(shape) * dtype.itemsize:
                raise ValueError(f"{part} holds {len(data) - end} bytes of data, its header says {shape} {dtype}")
            return np.frombuffer(data, dtype=dtype, offset=end).reshape(shape).copy()  # writable, as np.load
    return np.load(io.BytesIO(data), allow_pickle=False)


def _positive_ints(values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)


def _split_groups(raw: dict[str, Any], meta: dict[str, Any], spec: SampleSpec | None) -> list[BandGroup]:
    """The band groups of a format-2 sample as read-only views of its bytes, checked against
    ``meta.json`` and ``spec`` (non-finite pixels included)."""
    layout, bands, grid = meta.get("groups"), meta.get("bands"), meta.get("grid")
    if not layout or not bands or not isinstance(grid, list) or len(grid) != 2 or not _positive_ints(grid):
        raise ValueError(f"meta.json lacks 'groups', 'bands' or a grid of two positive sizes (grid: {grid!r})")
    data = raw[BANDS_PART]
    groups, offset = [], 0
    for entry in layout:
        names, shape, dtype = tuple(entry["bands"]), tuple(entry["shape"]), np.dtype(entry["dtype"])
        if (dtype.str not in _GROUP_DTYPE_CODES or len(shape) != 3 or shape[0] != len(names)
                or not _positive_ints(shape)):
            raise ValueError(f"group {list(names)} is declared {dtype} {list(shape)}")
        count = math.prod(shape)
        size = count * dtype.itemsize
        if offset + size > len(data):
            raise ValueError(f"{BANDS_PART} holds {len(data)} bytes, its groups need more (cut short?)")
        array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += size
        if dtype.kind == "f" and not np.isfinite(array).all():
            bad = (~np.isfinite(array)).reshape(len(names), -1).sum(axis=1)
            where = ", ".join(f"{n}: {int(c)}" for n, c in zip(names, bad) if c)
            raise ValueError(f"non-finite pixels (NaN or inf) in band(s) {where}")
        groups.append(BandGroup(names, array))
    if offset != len(data):
        raise ValueError(f"{BANDS_PART} holds {len(data)} bytes, its groups {offset}")
    held = [n for g in groups for n in g.bands]
    if sorted(held) != sorted(bands):
        raise ValueError(f"the groups hold bands {held}, 'bands' lists {list(bands)}")
    if spec is not None:
        if spec.bands is not None and tuple(bands) != tuple(spec.bands):
            raise ValueError(f"bands {list(bands)} differ from the card's {list(spec.bands)}"
                             if len(bands) == len(spec.bands) else
                             f"image has {len(bands)} bands, the card lists {len(spec.bands)}")
        if spec.grid is not None and tuple(grid) != tuple(spec.grid):
            raise ValueError(f"image is {grid[0]}x{grid[1]} px, not the {spec.grid[0]}x{spec.grid[1]} grid of "
                             f"{spec.grid_source}")
    return groups


def assemble_groups(groups: list[BandGroup], bands: list[str], grid: tuple[int, int]) -> np.ndarray:
    """One sample's float32 [C, H, W] image from its band groups (resampled onto ``grid``): a batch
    of one through :func:`assemble_batch`, so a sample decodes to the values a batch assembles."""
    import torch

    one = {"groups": [torch.from_numpy(g.array.copy())[None] for g in groups],  # copy: the views are read-only
           "names": [list(g.bands) for g in groups], "order": list(bands), "grid": list(grid)}
    return assemble_batch({"bands": one}, "cpu")[0].numpy()


def uint16_bits_to_float(bits):
    """float32 values of uint16 data held as int16 bits (exact: every uint16 is a float32)."""
    import torch

    return (bits.to(torch.int32) & 0xFFFF).float()


# Training batches of 8-bit RGB carry it under this key, uint8 [B, 3, H, W]: a quarter of the bytes
# of float32 through the loader's shared memory, pinned memory and the host-to-device copy.
RGB8_KEY = "image_u8"


def assemble_batch(batch: dict[str, Any], device: Any = None):
    """A batch's float32 image tensor [B, C, H, W] on ``device``: ``batch["image"]`` as is, 8-bit RGB
    (``batch[RGB8_KEY]``) divided by 255 there, or the ``batch["bands"]`` groups of a stream that left
    assembly to the device (stored dtype → float32, each coarser group resampled with the same
    bilinear method as :func:`resample_bands`)."""
    import torch

    if RGB8_KEY in batch:
        return batch[RGB8_KEY].to(device, non_blocking=True).float().div_(255.0)
    if "bands" not in batch:
        return batch["image"].to(device, non_blocking=True).float()
    bands = batch["bands"]
    grid, order = tuple(bands["grid"]), bands["order"]
    first = bands["groups"][0]
    out = torch.empty((first.shape[0], len(order), *grid), dtype=torch.float32, device=device)
    for names, tensor in zip(bands["names"], bands["groups"]):
        if tensor.dtype == torch.uint16 and torch.device(device or "cpu").type != "cpu":
            # uint16 is a thinly supported dtype off the CPU: move the same bits as int16 and widen
            # them there, instead of relying on a uint16 copy and cast kernel.
            values = uint16_bits_to_float(tensor.view(torch.int16).to(device, non_blocking=True))
        else:
            values = tensor.to(device, non_blocking=True).float()
        out[:, [order.index(n) for n in names]] = resample_bands(values, grid)
    return out


def _check_image(image: np.ndarray, meta: dict[str, Any], spec: SampleSpec | None) -> None:
    if image.ndim != 3 or image.dtype != np.float32:
        raise ValueError(f"image is {image.dtype} {image.shape}, expected float32 [C, H, W]")
    bands = meta.get("bands")
    if bands is not None and len(bands) != image.shape[0]:
        raise ValueError(f"image has {image.shape[0]} bands, meta.json lists {len(bands)}")
    if spec is not None:
        if spec.bands is not None:
            if image.shape[0] != len(spec.bands):
                raise ValueError(f"image has {image.shape[0]} bands, the card lists {len(spec.bands)}")
            if bands is not None and tuple(bands) != tuple(spec.bands):
                raise ValueError(f"bands {list(bands)} differ from the card's {list(spec.bands)}")
        if spec.grid is not None and tuple(image.shape[1:]) != tuple(spec.grid):
            raise ValueError(f"image is {image.shape[1]}x{image.shape[2]} px, not the {spec.grid[0]}x{spec.grid[1]} "
                             f"grid of {spec.grid_source}")
    finite = np.isfinite(image)
    if not finite.all():
        per_band = (~finite).reshape(image.shape[0], -1).sum(axis=1)
        names = bands or [str(i) for i in range(image.shape[0])]
        where = ", ".join(f"{names[i]}: {int(n)}" for i, n in enumerate(per_band) if n)
        raise ValueError(f"non-finite pixels (NaN or inf) in band(s) {where}")


def decode_sample(raw: dict[str, Any], spec: SampleSpec | None = None, assemble: bool = True) -> dict[str, Any]:
    """Decode and check a webdataset sample (``__key__`` plus member bytes).

    Returns ``{"key", "meta", "image" (float32 [C,H,W], or bytes for JPEG), ...}`` with the
    optional parts present in the sample; ``label`` is an int. With ``assemble=False`` a format-2
    sample keeps its band groups (``"groups"``: :class:`BandGroup` views in the stored dtype)
    instead of ``"image"``. Any defect (a missing or undecodable part, a shape, dtype or band list
    that disagrees with ``meta.json`` or ``spec``, a non-finite pixel) raises :class:`BadSample`
    naming the shard, the key and the reason.
    """
    key = str(raw.get("__key__", "?"))
    out: dict[str, Any] = {"key": key}
    try:
        out["meta"] = meta = json.loads(raw["meta.json"]) if "meta.json" in raw else {}
        if not isinstance(meta, dict):
            raise ValueError("meta.json is not a JSON object")
        if BANDS_PART in raw:
            groups = _split_groups(raw, meta, spec)
            if assemble:
                out["image"] = assemble_groups(groups, meta["bands"], tuple(meta["grid"]))
            else:
                out["groups"] = groups
        elif "image.npy" in raw:
            out["image"] = _load_npy(raw, "image.npy")
            _check_image(out["image"], meta, spec)
        elif "image.jpg" in raw:
            out["image"] = raw["image.jpg"]
        else:
            raise ValueError(f"no image ({BANDS_PART}, image.npy or image.jpg)")
        for part in raw:
            if part.endswith(".npy") and part != "image.npy":
                out[part[:-4]] = _load_npy(raw, part)
        if "label.cls" in raw:
            out["label"] = int(raw["label.cls"])
    except (ValueError, KeyError, TypeError, EOFError, OSError) as err:
        raise BadSample(str(raw.get("__url__", "?")), key, str(err) or type(err).__name__) from None
    return out


def image_array(image: np.ndarray | bytes) -> np.ndarray:
    """A decoded sample's image as an array [C,H,W]: arrays as stored, JPEG bytes as float32 RGB in
    [0, 1] at their stored size (for measuring and looking; training resizes with ``load_rgb``)."""
    if not isinstance(image, (bytes, bytearray)):
        return image
    from PIL import Image

    with Image.open(io.BytesIO(image)) as img:
        return np.asarray(rgb_image(img), dtype=np.float32).transpose(2, 0, 1) / 255.0


HIGH_BIT_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0}


def rgb_image(img):
    """A PIL image as 8-bit RGB. 16-bit greyscale (PIL modes ``I;16``, ``I``: PNG and TIFF scans,
    DEMs) is scaled by its full range; PIL's own ``convert`` clips it to 255 and turns it white."""
    from PIL import Image

    if img.mode in HIGH_BIT_MODES:
        grey = np.asarray(img, dtype=np.float64) / HIGH_BIT_MODES[img.mode]
        img = Image.fromarray(np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":  # 32-bit float pixels have no range to read them in: PIL's convert turns [0, 1] black
        raise ValueError("32-bit float pixels (PIL mode F) are not a photo's; convert them to 8 or 16 bits")
    return img.convert("RGB")


def load_rgb(source: bytes | str | Path, size: int, as_uint8: bool = False):
    """Decode an image to a float32 tensor [3, size, size] in [0, 1] (resize shorter side, centre crop),
    or with ``as_uint8`` to its 8-bit values [0, 255] (a quarter of the bytes; :func:`assemble_batch`
    divides by 255 on the training device, to the same float32 values).

    The one RGB decode of geodino: image folders and JPEG shards both go through it.
    """
    import torch
    from PIL import Image

    with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as img:
        img = rgb_image(img)
        w, h = img.size
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        array = np.array(img, dtype=np.uint8) if as_uint8 else np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


# -- locating shards ------------------------------------------------------------------------------
class IncompleteConversion(ShardFormatError):
    """The shards' ``index.json`` says the conversion that wrote them did not finish."""


def read_beside(url_or_folder: str | os.PathLike, name: str) -> str | None:
    """The text of the file ``name`` in a shard folder or beside a shard URL (local, ``pipe:``,
    ``http(s)://`` or fsspec), or None when there is none."""
    text = os.fspath(url_or_folder)
    if not is_remote(text):
        folder = text if os.path.isdir(text) else os.path.dirname(os.path.abspath(text))
        path = Path(folder) / name
        return path.read_text() if path.is_file() else None
    from geodino.data.shards.remote import read_text, sibling

    return read_text(sibling(text, name))


def read_index(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The ``index.json`` of a shard folder (or beside a shard URL), None when there is none."""
    text = read_beside(folder, INDEX_FILE)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        raise ShardFormatError(f"{INDEX_FILE} beside {os.fspath(folder)} is not valid JSON ({err}): "
                               "re-run the `geodino shard` command that wrote it") from None


_WARNED_INCOMPLETE: set[str] = set()


def check_complete(index: dict[str, Any] | None, where: str, allow_incomplete: bool = False) -> None:
    """Refuse shards of a conversion that did not finish (a killed ``geodino shard``, or parts of
    a ``--part I/N`` conversion still missing), unless ``allow_incomplete``."""
    if index is None or index.get("complete", True):
        return
    done = len(index.get("shards", []))
    planned = index.get("planned_shards", "?")
    message = (f"conversion of {where} is incomplete ({done} of {planned} shards): re-run the same "
               "`geodino shard` command")
    if not allow_incomplete:
        raise IncompleteConversion(message + " (or pass --allow-incomplete / data.allow_incomplete=true to read "
                                   "what is there)")
    if where not in _WARNED_INCOMPLETE:  # once per folder, not once per lookup
        _WARNED_INCOMPLETE.add(where)
        import logging

        logging.getLogger(__name__).warning("%s; reading it anyway (allow_incomplete)", message)


def expand_shards(spec: str | os.PathLike | Iterable[str], split: str | None = None,
                  allow_incomplete: bool = False) -> list[str]:
    """Shard paths of a folder, a tar path, a brace pattern (``dir/train-{000000..000003}.tar``),
    a ``::``-separated list, a glob, or a list of any of these; remote URLs (``pipe:COMMAND``,
    ``http(s)://``, fsspec schemes) with brace patterns.

    A folder's shards come from its ``index.json`` when there is one (so stale tars from an earlier
    conversion with another ``--shard-size`` are ignored, and shards left empty by rejects are
    skipped), else from ``*.tar``. ``split`` keeps only ``<split>-*.tar``. Shards whose
    ``index.json`` says the conversion is incomplete are refused (:class:`IncompleteConversion`)
    unless ``allow_incomplete``.
    """
    from braceexpand import braceexpand

    if not isinstance(spec, (str, os.PathLike)):
        return [p for item in spec for p in expand_shards(item, split, allow_incomplete)]
    text = os.fspath(spec)
    if "::" in text:
        return [p for item in text.split("::") for p in expand_shards(item, split, allow_incomplete)]
    if is_remote(text):
        paths = list(braceexpand(text))
        check_complete(read_index(paths[0]), text, allow_incomplete)
    elif os.path.isdir(text):
        index = read_index(text)
        check_complete(index, text, allow_incomplete)
        if index is not None:
            names = [s["name"] for s in index["shards"] if s["samples"] > 0]
            if not names:
                rejected = sum(len(s.get("rejected", [])) for s in index["shards"])
                raise FileNotFoundError(f"{text}: 0 samples, {rejected} rejected: see "
                                        f"{Path(text) / REJECTS_FILE}")
        else:
            names = sorted(p.name for p in Path(text).glob("*.tar"))
        paths = [str(Path(text) / n) for n in names]
    else:
        paths = []
        for item in braceexpand(text):
            paths.extend(sorted(glob.glob(item)) if glob.has_magic(item) else [item])
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"shard {missing[0]} does not exist ({len(missing)} missing)")
        if paths:
            check_complete(read_index(paths[0]), os.path.dirname(os.path.abspath(paths[0])), allow_incomplete)
    if split is not None:
        # Canonical names on both sides: `validation` finds `val-*.tar`, and folders written before
        # split names were unified (`validation-*.tar`, `bigearthnet-train-*.tar`) are still found.
        found, wanted = paths, split_name(split) or split
        paths = [p for p in found if shard_split(p) == wanted]
        if found and not paths:
            have = sorted({shard_split(p) for p in found})
            raise FileNotFoundError(f"no shards of split {split!r} at {text} (it has {', '.join(have)})")
    if not paths:
        what = f" of split {split!r}" if split else ""
        raise FileNotFoundError(f"no shards{what} found at {text}")
    return paths


def shard_split(path: str) -> str:
    """The split a shard belongs to, from its file name ``<split>-NNNNNN.tar``: the canonical name
    (:func:`split_name`) when the prefix is a spelling of one, else the prefix as written (``all``)."""
    stem = shard_file_name(str(path))
    if stem.endswith(".tar"):
        stem = stem[: -len(".tar")]
    prefix, _, number = stem.rpartition("-")
    if not (prefix and number.isdigit()):
        prefix = stem
    return split_name(prefix) or prefix


def training_shards(spec: str | os.PathLike | Iterable[str], split: str | None = None,
                    allow_incomplete: bool = False) -> list[str]:
    """Shards to train on or measure: ``split`` if given (any spelling; ``"all"``: every shard).

    A folder without ``split`` gives its train split, so validation and test data never leak into
    pretraining or normalisation statistics; a folder without any of train/val/test (``all-*.tar``
    of a conversion without split lists) is used whole; a folder with val or test but no train
    split is refused. Shards named one by one (a tar, a pattern, a list) are used as given.
    ``allow_incomplete`` is passed on to :func:`expand_shards`.
    """
    if split == "all":
        return expand_shards(spec, allow_incomplete=allow_incomplete)
    if split is not None:
        return expand_shards(spec, split, allow_incomplete)
    # A list of folders (or ``A::B``) is several datasets: each item gets the folder rule.
    if not isinstance(spec, (str, os.PathLike)):
        return [p for item in spec for p in training_shards(item, None, allow_incomplete)]
    if "::" in os.fspath(spec):
        return [p for item in os.fspath(spec).split("::") for p in training_shards(item, None, allow_incomplete)]
    paths = expand_shards(spec, allow_incomplete=allow_incomplete)
    if not (isinstance(spec, (str, os.PathLike)) and os.path.isdir(spec)):
        return paths
    train = [p for p in paths if shard_split(p) == "train"]
    if train:
        return train
    splits = sorted({shard_split(p) for p in paths})
    if set(splits) & {"val", "test"}:
        raise ShardFormatError(f"{os.fspath(spec)} has no train split (it has {', '.join(splits)}): training "
                               "and band statistics read training data only; name a split explicitly to use another")
    return paths


def shard_folder(urls: list[str]) -> Path:
    """The folder holding the first shard (where ``index.json`` and ``card.yaml`` live)."""
    return Path(urls[0]).parent
