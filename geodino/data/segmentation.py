"""Segmentation batches: images with per-pixel class maps, from the synthetic scenes, shards or SEN12MS.

Every source yields batches ``{"image": float32 [B, C, H, W] raw values in the card's band order,
"mask": int64 [B, H, W]}`` with ``IGNORE_INDEX`` (255) where a pixel has no class:

- ``synthetic``: :class:`~geodino.data.synthetic.SyntheticScenes` (``mask``), disjoint train and
  validation scene streams;
- ``shards``: ``mask.npy`` of shard samples (reBEN reference maps: the 19-class nomenclature,
  255 = no class; the synthetic shards: the scene classes); training streams the train split
  shuffled, validation reads the val split (else the test split) in order
  (:mod:`geodino.data.splits`);
- ``sen12ms``: a local copy in the SEN12MS layout, read by torchgeo's
  :class:`torchgeo.datasets.SEN12MS` (bands picked by name in the card's order); the IGBP land
  cover of the MODIS layer becomes the 10 simplified classes of DFC2020 or stays 17 IGBP classes.

The builders take a fine-tuning recipe (``geodino.finetune.config.SegConfig``: its ``data``
section and ``run.seed``); the data-source registry (:mod:`geodino.data.registry`) picks one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from geodino.data.batches import device_loader, loader_workers, worker_share
from geodino.data.card import DatasetCard
from geodino.utils import resolve_device

IGNORE_INDEX = 255

# IGBP land-cover classes (MODIS, 1-17) → the simplified scheme of SEN12MS / DFC2020.
IGBP_CLASSES = [
    "evergreen needleleaf forest", "evergreen broadleaf forest", "deciduous needleleaf forest",
    "deciduous broadleaf forest", "mixed forest", "closed shrublands", "open shrublands", "woody savannas",
    "savannas", "grasslands", "permanent wetlands", "croplands", "urban and built-up", "cropland/natural mosaic",
    "permanent snow and ice", "barren", "water bodies",
]
DFC_CLASSES = ["forest", "shrubland", "savanna", "grassland", "wetlands", "croplands", "urban/built-up",
               "snow/ice", "barren", "water"]
IGBP_TO_DFC = [0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 5, 7, 8, 9]  # indexed by IGBP code − 1


@dataclass
class SegData:
    """Where batches come from and what their classes are."""

    card: DatasetCard  # band order and statistics the images are standardised with
    class_names: list[str]
    steps_per_epoch: int
    train_batches: Callable[[int], Iterator[dict[str, torch.Tensor]]]  # epoch → batches
    val_batches: Callable[[], Iterator[dict[str, torch.Tensor]]]
    description: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _as_batch(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {"image": batch["image"].float(), "mask": batch["mask"].long()}


def map_style_seg_data(train: Dataset, val: Dataset, cfg: Any, card: DatasetCard, classes: list[str],
                       description: str) -> SegData:
    d = cfg.data
    steps = len(train) // d.batch_size
    if steps == 0:
        raise ValueError(f"data: {len(train)} training samples are fewer than one batch ({d.batch_size})")

    device = resolve_device(cfg.run.device)

    def train_batches(epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(cfg.run.seed * 100_003 + epoch)
        loader = device_loader(train, d.batch_size, device, d.num_workers, shuffle=True, drop_last=True,
                               generator=generator)
        for batch in loader:
            yield _as_batch(batch)

    def val_batches() -> Iterator[dict[str, torch.Tensor]]:
        for batch in device_loader(val, d.batch_size, device, d.num_workers, shuffle=False):
            yield _as_batch(batch)

    return SegData(card, classes, steps, train_batches, val_batches, description)


def check_bands(card: DatasetCard, bands: list[str], where: str) -> None:
    if list(bands) != card.band_names:
        raise ValueError(f"{where} holds bands {list(bands)}, the model takes {card.band_names} (in that order)")


# -- synthetic -------------------------------------------------------------------------------------
def synthetic_seg_data(cfg: Any, card: DatasetCard | None) -> SegData:
    from geodino.data.synthetic import SyntheticScenes

    d = cfg.data
    train = SyntheticScenes(d.num_samples, d.image_size, d.num_classes, seed=cfg.run.seed, split="train")
    val = SyntheticScenes(d.val_samples, d.image_size, d.num_classes, seed=cfg.run.seed, split="knn_val")
    card = card or train.card
    check_bands(card, train.card.band_names, "the synthetic scenes")
    return map_style_seg_data(train, val, cfg, card, list(train.card.classes),
                              f"{len(train)} + {len(val)} synthetic scenes of {d.image_size} px")


# -- shards ----------------------------------------------------------------------------------------
class ShardMasks(IterableDataset):
    """The samples of some shards, in order, as ``{"image", "mask"}``."""

    def __init__(self, paths: list[str], limit: int | None) -> None:
        self.paths, self.limit = paths, limit

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from geodino.data.shards.read import iter_samples

        for _, sample in worker_share(iter_samples(self.paths), self.limit):
            if "mask" not in sample:
                raise ValueError(f"shard sample {sample['key']} has no mask.npy")
            yield {"image": torch.from_numpy(sample["image"]), "mask": torch.from_numpy(sample["mask"].astype(np.int64))}


def shard_seg_data(cfg: Any, card: DatasetCard | None) -> SegData:
    from geodino.data.shards.stream import count_samples, make_shard_loader
    from geodino.data.splits import check_disjoint, training_split, validation_split

    d = cfg.data
    train = training_split(d.root, d.train_split or None)
    val = validation_split(d.root, d.val_split or None, option="data.val_split")
    check_disjoint(train, val)
    data_card = DatasetCard.beside_shards(train.paths[0])
    card = card or data_card
    check_bands(card, data_card.band_names, f"the shards at {d.root}")
    if not data_card.classes:
        raise ValueError(f"the card beside {d.root} lists no classes: cannot name the mask classes")
    samples = d.num_samples or count_samples(train.paths)
    steps = samples // d.batch_size
    if steps == 0:
        raise ValueError(f"data: {samples} training samples are fewer than one batch ({d.batch_size})")
    device = resolve_device(cfg.run.device)
    loader = make_shard_loader(train.paths, batch_size=d.batch_size, num_workers=loader_workers(d.num_workers, device),
                               seed=cfg.run.seed, steps_per_epoch=steps, shuffle_buffer=1000,
                               pin_memory=torch.device(device).type == "cuda")

    def train_batches(epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        for batch in loader.iterate(epoch):
            if "mask" not in batch:
                raise ValueError(f"the shards at {d.root} have no mask.npy")
            yield _as_batch(batch)

    def val_batches() -> Iterator[dict[str, torch.Tensor]]:
        masks = ShardMasks(val.paths, d.val_samples or None)
        for batch in device_loader(masks, d.batch_size, device, d.num_workers):
            yield _as_batch(batch)

    return SegData(card, list(data_card.classes), steps, train_batches, val_batches,
                   f"{train.describe()}; {val.describe()}")


# -- SEN12MS (torchgeo) ----------------------------------------------------------------------------
class SEN12MSMasks(Dataset):
    """torchgeo's SEN12MS with the land cover as a segmentation target of the chosen scheme."""

    def __init__(self, root: str, split: str, bands: list[str], label_map: str, limit: int | None = None) -> None:
        from torchgeo.datasets import SEN12MS

        missing = [b for b in bands if b not in SEN12MS.band_names]
        if missing:
            raise ValueError(f"SEN12MS has no bands {missing} (it has {list(SEN12MS.band_names)})")
        self.dataset = SEN12MS(root, split=split, bands=bands)
        self.limit = min(limit, len(self.dataset)) if limit else len(self.dataset)
        lookup = np.full(256, IGNORE_INDEX, np.int64)
        if label_map == "dfc":
            lookup[1:18] = IGBP_TO_DFC
        else:
            lookup[1:18] = np.arange(17)
        self.lookup = torch.from_numpy(lookup)

    def __len__(self) -> int:
        return self.limit

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.dataset[index]
        mask = sample["mask"].long().clamp(0, 255)
        return {"image": sample["image"].float(), "mask": self.lookup[mask]}


def sen12ms_seg_data(cfg: Any, card: DatasetCard) -> SegData:
    from geodino.data.shards.format import split_name

    d = cfg.data
    classes = DFC_CLASSES if d.label_map == "dfc" else IGBP_CLASSES
    # SEN12MS has a train and a test split; any spelling of those names is accepted.
    train_split = split_name(d.train_split) or d.train_split if d.train_split else "train"
    val_split = split_name(d.val_split) or d.val_split if d.val_split else "test"
    train = SEN12MSMasks(d.root, train_split, card.band_names, d.label_map, d.num_samples or None)
    val = SEN12MSMasks(d.root, val_split, card.band_names, d.label_map, d.val_samples or None)
    return map_style_seg_data(train, val, cfg, card, list(classes), f"SEN12MS at {d.root}: {len(train)} + {len(val)}")
