"""Labelled evaluation sets from a command-line DATA argument: shards or the synthetic scenes.

``DATA`` is a shard folder, a tar, a brace pattern / glob (``dir/val-{000000..000003}.tar``), or
``synthetic`` (the embedded scenes, generated with the checkpoint's recipe); the data-source
registry (:mod:`geodino.data.registry`) reads it. Splits follow :mod:`geodino.data.splits`: the
training data (memory bank, probe training set) is the train split, the validation data the val
split, else the test split; a split may be named by any spelling (``validation`` = ``val``). Data
without a val or test split is refused as validation data, and so are training and validation
data that share shards (:func:`check_eval_data`): a model is never scored on its memory bank.

Labels (``label``): ``auto`` takes the first image-level label the data's card declares
(``labels:`` in the card, e.g. ``[labels19, labels43]``); or name one the data has.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from geodino.data.card import DatasetCard
from geodino.data.labelled import LabelledSet
from geodino.data.registry import get_source

__all__ = ["LabelledSet", "check_eval_data", "open_labelled_set", "subsample_indices"]

SYNTHETIC = "synthetic"
SHARDS = "shards"


def data_source(spec: str) -> str:
    """The registry name of the source a DATA argument means."""
    return SYNTHETIC if str(spec) == SYNTHETIC else SHARDS


def check_eval_data(train: str, val: str, train_split: str | None = None, val_split: str | None = None) -> None:
    """Refuse, before any work, validation data without a val or test split (naming ``--val-split``
    and the splits found) and training and validation data that share shards."""
    from geodino.data.splits import check_disjoint, training_split, validation_split

    train_choice = training_split(train, train_split) if data_source(train) == SHARDS else None
    val_choice = validation_split(val, val_split, "--val-split") if data_source(val) == SHARDS else None
    if train_choice is not None and val_choice is not None:
        check_disjoint(train_choice, val_choice)


def open_labelled_set(spec: str, role: str, card: DatasetCard, cfg: dict[str, Any], *, label: str = "auto",
                      split: str | None = None, num_samples: int | None = None,
                      image_size: int | None = None) -> LabelledSet:
    """The evaluation data ``spec`` for ``role`` (``train``: the memory bank or probe training set;
    ``val``: the queries), checked against the model's ``card``."""
    if role not in ("train", "val"):
        raise ValueError(f"role must be 'train' or 'val', not {role!r}")
    source = get_source(data_source(spec), "evaluation")
    return source.labelled_set(str(spec), role, card, cfg, label=label, split=split, num_samples=num_samples,
                               image_size=image_size, split_option=f"--{role}-split")


def subsample_indices(n: int, fraction: float, seed: int) -> torch.Tensor:
    """A seeded, sorted choice of ``ceil(fraction × n)`` (at least one) of ``n`` indices."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return torch.arange(n)
    keep = max(1, math.ceil(round(fraction * n, 6)))  # round: 0.01 × 300 is 3, not 3.0000000000000004
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:keep].sort().values
