"""Labelled evaluation sets from a command-line DATA argument: shards or the synthetic scenes.

``DATA`` is a shard folder, a tar, a brace pattern / glob (``dir/val-{000000..000003}.tar``), or
``synthetic`` (the embedded scenes, generated with the checkpoint's recipe). A shard folder gives
its ``train`` shards as training data and its first of ``val``/``validation``/``test`` as
validation data, unless a split is named.

Labels (``label``): ``labels19`` / ``labels43`` (multi-hot, BigEarthNet), ``label`` (a class
index), ``labels`` (the synthetic scenes' multi-hot classes), or ``auto``: ``labels19`` when the
data has it, else ``label``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset

from geodino.data.card import DatasetCard

SYNTHETIC = "synthetic"
VAL_SPLITS = ("val", "validation", "test")
LABEL_PREFERENCE = ("labels19", "label")


@dataclass
class LabelledSet:
    """A dataset of ``{"image", <label>}`` samples and what describes it."""

    dataset: Dataset
    label_key: str
    description: str
    class_names: list[str]


class ShardSamples(IterableDataset):
    """The samples of some shards, in order, as ``{"image": float32 [C,H,W], label_key: ...}``."""

    def __init__(self, paths: list[str], label_key: str, limit: int | None = None) -> None:
        self.paths, self.label_key, self.limit = paths, label_key, limit

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from geodino.data.shards.format import iter_samples
        from geodino.data.shards.stream import to_tensors

        for n, sample in enumerate(iter_samples(self.paths)):
            if self.limit is not None and n >= self.limit:
                return
            if self.label_key not in sample:
                raise ValueError(f"shard sample {sample['key']} has no {self.label_key!r}")
            tensors = to_tensors(sample, None)
            label = tensors[self.label_key]
            yield {"image": tensors["image"].float(), self.label_key: label.float() if label.ndim == 1 else label}


def shard_split_paths(spec: str, role: str, split: str | None = None) -> list[str]:
    """The shards of ``spec`` to use as ``role`` (``train`` or ``val``) data."""
    from geodino.data.shards.format import expand_shards

    if split:
        return expand_shards(spec, None if split == "all" else split)
    if not os.path.isdir(spec):
        return expand_shards(spec)
    if role == "train":
        from geodino.data.shards.format import training_shards

        return training_shards(spec)
    for name in VAL_SPLITS:
        try:
            return expand_shards(spec, name)
        except FileNotFoundError:
            continue
    return expand_shards(spec)


def _shard_labelled_set(spec: str, role: str, card: DatasetCard, label: str, split: str | None,
                        num_samples: int | None) -> LabelledSet:
    from geodino.data.shards.format import CARD_FILE, iter_samples, shard_folder

    paths = shard_split_paths(spec, role, split)
    folder_card = shard_folder(paths) / CARD_FILE
    data_card = DatasetCard.load(folder_card) if folder_card.is_file() else None
    first = next(iter_samples(paths[:1]), None)
    if first is None:
        raise ValueError(f"{paths[0]} holds no samples")
    bands = first["meta"].get("bands") or (data_card.band_names if data_card else None)
    if bands is not None and list(bands) != card.band_names:
        raise ValueError(f"the shards at {spec} hold bands {list(bands)}, the model takes {card.band_names} "
                         "(in that order)")
    if label == "auto":
        label = next((k for k in LABEL_PREFERENCE if k in first), "")
        if not label:
            raise ValueError(f"the shards at {spec} have no labels ({', '.join(LABEL_PREFERENCE)}, labels43)")
    elif label not in first:
        raise ValueError(f"the shards at {spec} have no {label!r}; they have "
                         f"{[k for k in first if k not in ('key', 'meta', 'image')]}")
    names: list[str] = []
    if data_card is not None:
        names = list(data_card.extra.get("classes43", [])) if label == "labels43" else list(data_card.classes)
    description = f"{len(paths)} shard(s) from {spec}" + (f" (first {num_samples})" if num_samples else "")
    return LabelledSet(ShardSamples(paths, label, num_samples), label, description, names)


def _synthetic_labelled_set(role: str, card: DatasetCard, cfg: dict[str, Any], label: str,
                            num_samples: int | None, image_size: int | None) -> LabelledSet:
    from geodino.data.synthetic import SyntheticScenes, synthetic_card

    data = dict(cfg.get("data", {}))
    if data.get("source", SYNTHETIC) != SYNTHETIC:
        # Pretrained on the synthetic scenes written as shards: same bands, the card's classes.
        if card.band_names != synthetic_card().band_names:
            raise ValueError("DATA=synthetic needs a checkpoint pretrained on the synthetic scenes "
                             f"(this one used data.source={data.get('source')!r}, card {card.name!r})")
        data = {"num_classes": len(card.classes) or 8, "image_size": cfg["augment"]["global_size"]}
    label = "label" if label == "auto" else label
    if label not in ("label", "labels"):
        raise ValueError(f"the synthetic scenes have 'label' and 'labels', not {label!r}")
    default = data.get("eval_train_samples", 1024) if role == "train" else data.get("eval_val_samples", 512)
    dataset = SyntheticScenes(num_samples or default, image_size or data.get("image_size", 64),
                              data.get("num_classes", 8), seed=cfg.get("run", {}).get("seed", 0),
                              split="knn_train" if role == "train" else "knn_val")
    return LabelledSet(dataset, label, f"{len(dataset)} synthetic scenes ({role})", list(dataset.card.classes))


def open_labelled_set(spec: str, role: str, card: DatasetCard, cfg: dict[str, Any], *, label: str = "auto",
                      split: str | None = None, num_samples: int | None = None,
                      image_size: int | None = None) -> LabelledSet:
    """The evaluation data ``spec`` for ``role`` (``train``: the memory bank or probe training set;
    ``val``: the queries), checked against the model's ``card``."""
    if role not in ("train", "val"):
        raise ValueError(f"role must be 'train' or 'val', not {role!r}")
    if str(spec) == SYNTHETIC:
        return _synthetic_labelled_set(role, card, cfg, label, num_samples, image_size)
    return _shard_labelled_set(str(spec), role, card, label, split, num_samples)


def subsample_indices(n: int, fraction: float, seed: int) -> torch.Tensor:
    """A seeded, sorted choice of ``ceil(fraction × n)`` (at least one) of ``n`` indices."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return torch.arange(n)
    keep = max(1, math.ceil(round(fraction * n, 6)))  # round: 0.01 × 300 is 3, not 3.0000000000000004
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:keep].sort().values
