"""The embedded synthetic SAR-optical scenes written as standard shards (no download needed).

Lets every shard-reading path (pretraining with ``data.source=shards``, evaluation, segmentation)
run on a laptop and in tests. A sample holds its 8 float32 bands (shard format 2, the synthetic
card's band order), ``label.cls`` (the dominant class), ``mask.npy`` (uint8 per-pixel class) and
``meta.json``; the folder gets ``card.yaml`` (with the generator's band statistics) and
``index.json``. Splits ``train`` and ``val`` come from disjoint scene streams of
:class:`~geodino.data.synthetic.SyntheticScenes` (``train`` and ``knn_val``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geodino.data.shards.format import SampleParts, group_bands
from geodino.data.synthetic import OPTICAL_BANDS, SAR_BANDS, SyntheticScenes, make_scene, synthetic_card

# Scene stream of each shard split (SyntheticScenes split names).
SCENE_STREAMS = {"train": "train", "val": "knn_val"}


@dataclass(frozen=True)
class SyntheticItem:
    key: str
    split: str
    index: int


def list_items(num_samples: int, val_samples: int) -> list[SyntheticItem]:
    items = [SyntheticItem(f"synthetic_train_{i:07d}", "train", i) for i in range(num_samples)]
    items += [SyntheticItem(f"synthetic_val_{i:07d}", "val", i) for i in range(val_samples)]
    return items


def read_item(item: SyntheticItem, image_size: int, num_classes: int, seed: int) -> SampleParts:
    """One scene as shard parts (module-level, so that worker processes can run it)."""
    stream_seed = seed + SyntheticScenes.SPLIT_OFFSETS[SCENE_STREAMS[item.split]]
    scene = make_scene(item.index, stream_seed, image_size, num_classes)
    meta = {"bands": OPTICAL_BANDS + SAR_BANDS, "split": item.split, "source": "synthetic",
            "index": item.index, "seed": seed}
    image = scene["image"].astype(np.float32)
    groups = group_bands(list(zip(meta["bands"], image)))
    return SampleParts(key=item.key, image=groups, meta=meta, grid=image.shape[1:],
                       label=int(scene["label"]), mask=scene["mask"].astype(np.uint8))


def write_synthetic_shards(
    out: str | Path,
    num_samples: int = 256,
    val_samples: int | None = None,
    image_size: int = 32,
    num_classes: int = 8,
    seed: int = 0,
    shard_size: int = 64,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``num_samples`` training and ``val_samples`` (default: a quarter) validation scenes."""
    from geodino.data.shards.writer import write_shards

    if val_samples is None:
        val_samples = max(1, num_samples // 4)
    read = functools.partial(read_item, image_size=image_size, num_classes=num_classes, seed=seed)
    source = {"kind": "synthetic", "image_size": image_size, "num_classes": num_classes, "seed": seed}
    return write_shards(out, list_items(num_samples, val_samples), read, synthetic_card(num_classes),
                        shard_size=shard_size, workers=workers, strict=True, seed=seed, source=source,
                        progress=progress)
