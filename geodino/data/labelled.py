"""Labelled samples for evaluation: a dataset of ``{"image", <label>}`` and what describes it.

Which label a set carries is chosen from the dataset card's ``labels`` (its label kinds, in order
of preference; see :attr:`geodino.data.card.DatasetCard.label_kinds`), so no reader needs to know
a dataset's label names. Only data whose card does not declare its labels is probed: its first
sample shows which of the shard format's label parts it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset, IterableDataset

from geodino.data.batches import worker_share
from geodino.data.card import DatasetCard

# Label kinds that give a class per pixel rather than per image: segmentation targets, of no use
# to a k-NN or a linear probe on image embeddings.
PIXEL_LABELS = ("mask",)


@dataclass
class LabelledSet:
    """A dataset of ``{"image", <label_key>}`` samples and what describes it.

    ``shards`` lists the shard files it reads (empty for generated data), so that a caller can
    check that two sets do not share samples.
    """

    dataset: Dataset
    label_key: str
    description: str
    class_names: list[str]
    shards: list[str] = field(default_factory=list)


def choose_label(requested: str, kinds: list[str], where: str) -> str:
    """``requested`` if ``where`` offers it, or for ``auto`` the first image-level kind of ``kinds``
    (the card's order of preference)."""
    if requested == "auto":
        image_level = [k for k in kinds if k not in PIXEL_LABELS]
        if not image_level:
            raise ValueError(f"{where} has no image-level labels (it has {kinds or 'none'}): nothing to evaluate on")
        return image_level[0]
    if requested not in kinds:
        raise ValueError(f"{where} has no {requested!r}; it has {kinds}")
    return requested


def label_class_names(card: DatasetCard | None, kind: str) -> list[str]:
    """The class names of label ``kind``: the card's ``classes<N>`` list for ``labels<N>`` when it
    has one (``labels43`` -> ``classes43``), else its ``classes``."""
    if card is None:
        return []
    own = card.extra.get(kind.replace("labels", "classes", 1)) if kind.startswith("labels") else None
    return list(own) if isinstance(own, list) and own else list(card.classes)


# The key of a sample's position in its dataset, where loader workers may reorder the samples.
SAMPLE_INDEX = "index"


class ShardSamples(IterableDataset):
    """The samples of some shards, in order, as ``{"image": float32 [C,H,W], label_key: ...,
    "index": position}`` (multi-hot labels as float, class indices as int64). Read by several
    loader workers, each yields its share (:func:`~geodino.data.batches.worker_share`) and the
    batches interleave; ``index`` puts them back in order."""

    def __init__(self, paths: list[str], label_key: str, limit: int | None = None) -> None:
        self.paths, self.label_key, self.limit = paths, label_key, limit

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from geodino.data.shards.read import iter_samples
        from geodino.data.shards.stream import to_tensors

        for n, sample in worker_share(iter_samples(self.paths), self.limit):
            if self.label_key not in sample:
                raise ValueError(f"shard sample {sample['key']} has no {self.label_key!r}")
            tensors = to_tensors(sample, None)
            label = tensors[self.label_key]
            yield {"image": tensors["image"].float(), self.label_key: label.float() if label.ndim == 1 else label,
                   SAMPLE_INDEX: n}
