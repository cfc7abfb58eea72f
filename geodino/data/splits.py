"""Which split of a shard folder each job reads, and a sentence that says so.

Split names follow :func:`geodino.data.shards.format.split_name` everywhere (``validation`` and
``valid`` are ``val``; a shard named ``bigearthnet-train-000000.tar`` is in ``train``), so a split
can be asked for by any spelling. The roles:

- ``train`` (pretraining, band statistics, the memory bank or probe of an evaluation, the
  training set of fine-tuning): a folder's train split; a folder without train/val/test splits
  (``all``) whole; a folder with val or test but no train split is refused
  (:func:`~geodino.data.shards.format.training_shards`).
- ``val`` (the queries of an evaluation, the validation set of fine-tuning): the val split, else
  the test split; data with neither is refused, so a model is never scored on what it was fitted
  to. :func:`check_disjoint` refuses a training and a validation choice that share shards.

Shards named one by one (a tar, a pattern, a list) keep their own names' splits, so the same rules
apply to them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Iterable

from geodino.data.shards.format import expand_shards, shard_split, training_shards
from geodino.data.shards.read import shard_counts

log = logging.getLogger(__name__)

HELD_OUT = ("val", "test")  # in order of preference for the validation role
STANDARD = ("train", *HELD_OUT)
ALL = "all"


class SplitError(ValueError):
    """The data has no split a job may read for its role; names the data and the splits it has."""


def group_by_split(paths: Iterable[str]) -> dict[str, list[str]]:
    """Shard paths by split, train/val/test first, then other names as found."""
    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(shard_split(path), []).append(path)
    order = {"train": 0, "val": 1, "test": 2}
    return dict(sorted(groups.items(), key=lambda item: order.get(item[0], 3)))


def _amount(paths: list[str]) -> str:
    shards = f"{len(paths)} shard{'s' if len(paths) != 1 else ''}"
    try:
        counts = shard_counts(paths)
    except (OSError, ValueError):  # an index that does not list a shard: the readers will say so
        counts = None
    return shards if counts is None else f"{shards}, {sum(counts.values())} samples"


@dataclass
class SplitChoice:
    """The shards a job reads for ``role`` and the shards of the same data it leaves out.

    ``split`` is the canonical name of the split read, or ``all`` when the shards span several
    splits or the data has no train/val/test split at all.
    """

    spec: str
    role: str
    split: str
    paths: list[str]
    left_out: dict[str, list[str]] = field(default_factory=dict)

    @property
    def unsplit(self) -> bool:
        """The data has none of the standard splits (e.g. only ``all-*.tar``)."""
        return not any(shard_split(p) in STANDARD for p in [*self.paths, *sum(self.left_out.values(), [])])

    def describe(self) -> str:
        """What is read, for a log line or a report: which split of which data, how much of it,
        and what was left out (e.g. ``the train split of shards/ (4 shards, 96 samples); left
        out: val (1 shard, 32 samples)``)."""
        if self.unsplit:
            found = ", ".join(group_by_split(self.paths))
            text = f"all of {self.spec}, which has no train/val/test split (only {found}) ({_amount(self.paths)})"
        else:
            what = "every split" if self.split == ALL else f"the {self.split} split"
            text = f"{what} of {self.spec} ({_amount(self.paths)})"
        if self.left_out:
            text += "; left out: " + ", ".join(f"{name} ({_amount(paths)})" for name, paths in self.left_out.items())
        return text


def _text(spec: str | os.PathLike | Iterable[str]) -> str:
    return os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else "::".join(map(str, spec))


def _choice(spec, role: str, paths: list[str], allow_incomplete: bool = False) -> SplitChoice:
    groups = group_by_split(paths)
    chosen = set(paths)
    every = group_by_split(expand_shards(spec, allow_incomplete=allow_incomplete))
    left_out = {name: [p for p in group if p not in chosen] for name, group in every.items()}
    return SplitChoice(_text(spec), role, next(iter(groups)) if len(groups) == 1 else ALL, paths,
                       {name: group for name, group in left_out.items() if group})


def training_split(spec: str | os.PathLike | Iterable[str], split: str | None = None,
                   allow_incomplete: bool = False) -> SplitChoice:
    """The shards to train on (see the module docstring); ``split`` names another (any spelling, or ``all``)."""
    return _choice(spec, "train", training_shards(spec, split or None, allow_incomplete), allow_incomplete)


def validation_split(spec: str | os.PathLike | Iterable[str], split: str | None = None,
                     option: str = "--val-split") -> SplitChoice:
    """The shards to validate on: ``split`` if given (any spelling, or ``all``), else the val split,
    else the test split.

    Data with neither is refused with one line naming the splits found and ``option`` (the setting
    that names a split explicitly), never quietly scored on its training data.
    """
    if split:
        return _choice(spec, "val", training_shards(spec, split))
    groups = group_by_split(expand_shards(spec))
    for name in HELD_OUT:
        if name in groups:
            return _choice(spec, "val", groups[name])
    raise SplitError(f"{_text(spec)} has no val or test split (it has {', '.join(groups)}): name the split to "
                     f"validate on with {option}")


def check_disjoint(train: SplitChoice, val: SplitChoice) -> None:
    """Refuse validation data that shares shards with the training data (the same shards, or some)."""
    train_paths = {os.path.realpath(p) for p in train.paths}
    val_paths = {os.path.realpath(p) for p in val.paths}
    shared = train_paths & val_paths
    if not shared:
        return
    how = "are the same shards" if train_paths == val_paths else f"share {len(shared)} shard(s)"
    raise SplitError(f"the training data ({train.split} of {train.spec}) and the validation data ({val.split} of "
                     f"{val.spec}) {how}: a model would be scored on samples it was fitted to; choose other "
                     "splits or other data")
