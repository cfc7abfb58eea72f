"""RGB images in ImageNet-style class folders (``root/<class>/<image>``): listing, shard items and a
map-style dataset.

Shards keep each JPEG's original bytes (re-encoding would lose quality and time); the few files
that are not JPEG (ImageNet has some PNG and CMYK files behind ``.JPEG`` names) are converted to RGB
JPEG once, flagged ``reencoded`` in ``meta.json``; 16-bit greyscale (PNG/TIFF scans, DEMs) is
scaled by its full range on the way (:func:`geodino.data.shards.format.rgb_image`), not clipped
to white. :func:`~geodino.data.shards.format.load_rgb` (re-exported here) is the one decode used
both by :class:`ImageFolderDataset` and when streaming ``image.jpg`` from shards.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geodino.data.bad import SampleError
from geodino.data.shards.format import RGB8_KEY, PatchError, SampleParts, load_rgb, rgb_image

__all__ = ["ImageFolderDataset", "ImageItem", "find_classes", "list_images", "load_rgb", "read_item"]

log = logging.getLogger("geodino")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass
class ImageItem:
    key: str
    split: str
    path: str
    label: int
    class_name: str


def find_classes(root: str | Path) -> list[str]:
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"no class folders under {root} (expected root/<class>/<image>)")
    return classes


def list_images(root: str | Path, split: str = "train") -> tuple[list[ImageItem], list[str]]:
    """Every image under ``root/<class>/`` (recursively) and the sorted class names."""
    root = Path(root)
    classes = find_classes(root)
    items, by_key, skipped = [], {}, Counter()
    for label, name in enumerate(classes):
        for dirpath, _, files in os.walk(root / name):
            for file in sorted(files):
                path = Path(dirpath) / file
                if not file.lower().endswith(IMAGE_SUFFIXES):
                    skipped[path.suffix.lower() or file] += 1
                    continue
                rel = path.relative_to(root).with_suffix("")
                # Keys may not contain '.' or '/' (webdataset splits member names at the first dot).
                key = re.sub(r"[./]", "_", rel.as_posix())
                if key in by_key:
                    raise ValueError(f"{by_key[key]} and {path} would both be sample {key!r}: rename one")
                by_key[key] = path
                items.append(ImageItem(key, split, str(path), label, name))
    if skipped:  # said, with what they were, so that a .gif or .jfif class is not lost unseen
        log.warning("%s: %d file(s) that are not %s images left out (%s)", root, sum(skipped.values()),
                    "/".join(s.lstrip(".") for s in IMAGE_SUFFIXES),
                    ", ".join(f"{k}: {v}" for k, v in skipped.most_common(8)))
    return items, classes


def unreadable_image_errors() -> tuple[type[BaseException], ...]:
    """What PIL raises for a file that is not a usable image: truncated or corrupt data
    (OSError, SyntaxError), no known format, images of over ~179 Mpixel (DecompressionBombError;
    one such photo stopped a whole conversion) and pixel modes a photo does not have (ValueError)."""
    from PIL import Image, UnidentifiedImageError

    return OSError, UnidentifiedImageError, SyntaxError, Image.DecompressionBombError, ValueError


def read_item(item: ImageItem) -> SampleParts:
    """Original JPEG bytes (or a one-off JPEG of another format), checked to decode."""
    from PIL import Image

    try:
        data = Path(item.path).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # a truncated or corrupt file fails here, not during training
            reencoded = not (data.startswith(JPEG_MAGIC) and img.mode in ("RGB", "L"))
            if reencoded:
                buf = io.BytesIO()
                rgb_image(img).save(buf, format="JPEG", quality=95)
                data = buf.getvalue()
    except unreadable_image_errors() as err:
        raise PatchError(item.key, item.path, f"unreadable image: {err}") from None
    meta: dict[str, Any] = {"source": "imagefolder", "bands": ["R", "G", "B"], "path": item.path,
                            "class": item.class_name, "split": item.split, "reencoded": reencoded}
    return SampleParts(key=item.key, image=data, meta=meta, label=item.label)


class ImageFolderDataset:
    """Map-style dataset over class folders: ``{"image": float32 [3,S,S] in [0,1], "label": int}``, or
    with ``uint8`` (training batches) ``{RGB8_KEY: uint8 [3,S,S], "label": int}``."""

    def __init__(self, root: str | Path, image_size: int = 256, uint8: bool = False) -> None:
        self.items, self.classes = list_images(root)
        if not self.items:
            raise FileNotFoundError(f"no images under {root}")
        self.image_size, self.uint8 = image_size, uint8

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        try:
            pixels = load_rgb(item.path, self.image_size, as_uint8=self.uint8)
        except unreadable_image_errors() as err:
            raise SampleError(item.path, item.key, f"unreadable image: {err}") from None
        return {RGB8_KEY if self.uint8 else "image": pixels, "label": item.label}
