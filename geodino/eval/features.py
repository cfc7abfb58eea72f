"""Frozen-feature extraction: whole images, standardised with the dataset card, through a backbone.

One pass over the data can produce several feature sets at once, one per modality choice (e.g.
optical only, SAR only, both): the images are read and standardised once and the backbone runs
once per choice, with the hidden modality filled in standardised space
(:func:`geodino.augment.modality.apply_modality_choice`). Extracted sets can be cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from geodino.data.batches import device_loader
from geodino.data.card import DatasetCard
from geodino.data.labelled import SAMPLE_INDEX
from geodino.models.backbone import Backbone
from geodino.runs.checkpoint import save_torch
from geodino.utils import autocast_to, one_line, resolve_precision

log = logging.getLogger("geodino")

# Name of the feature set computed on the unmodified input.
ALL_BANDS = "all"

Embed = Callable[[Backbone, torch.Tensor], torch.Tensor]


def standardise(images: torch.Tensor, card: DatasetCard) -> torch.Tensor:
    """``(x − mean) / std`` per band, with the card's statistics."""
    if card.mean is None or card.std is None:
        raise ValueError(f"dataset card {card.name!r} has no statistics; run `geodino stats` first")
    if images.shape[1] != card.num_bands:
        raise ValueError(f"images have {images.shape[1]} bands, card {card.name!r} lists {card.num_bands}")
    mean = torch.tensor(card.mean, device=images.device, dtype=images.dtype)[None, :, None, None]
    std = torch.tensor(card.std, device=images.device, dtype=images.dtype)[None, :, None, None]
    return (images - mean) / std


def cls_embedding(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """The image embedding the k-NN protocol uses: the final (normed) CLS token."""
    return backbone(images, cls_only=True).cls


def probe_embedding(n_last_blocks: int = 4, avgpool: bool = False) -> Embed:
    """The linear-probe feature of DINO: the CLS tokens of the last ``n_last_blocks`` blocks
    concatenated (:meth:`Backbone.last_blocks_cls`), plus, with ``avgpool``, the mean of the last
    block's patch tokens."""

    def embed(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
        if not avgpool or not backbone.is_vit:
            return backbone.last_blocks_cls(images, n_last_blocks)
        # One pass for both parts: the CLS tokens and the patch tokens of the same blocks.
        outs = backbone.model.forward_intermediates(images, indices=n_last_blocks, norm=True,
                                                    intermediates_only=True, return_prefix_tokens=True,
                                                    output_fmt="NLC")
        cls = torch.cat([prefix[:, 0] for _, prefix in outs], dim=-1)
        return torch.cat([cls, outs[-1][0].mean(1)], dim=-1)

    return embed


def fit_size(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize whole images to ``size`` × ``size`` (bicubic, antialiased); ``None`` keeps them."""
    if size is None or images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)


@torch.no_grad()
def extract_feature_sets(
    backbone: Backbone,
    dataset: Dataset,
    card: DatasetCard,
    size: int | None,
    *,
    modalities: Sequence[str] = (ALL_BANDS,),
    fill: float = 0.0,
    embed: Embed = cls_embedding,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    label_key: str = "label",
    progress: bool = False,
    workers: int = 0,
    precision: str = "fp32",
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Embeddings of every sample for each modality choice, and the labels.

    ``modalities`` are choices as :func:`~geodino.augment.modality.apply_modality_choice` takes
    them (``"s2"``, ``"s1"``, ``"s2+s1"``) or :data:`ALL_BANDS` (no filling). Map-style and
    iterable datasets both work; samples are dicts with ``image`` and ``label_key``. ``workers``
    loader processes (-1: auto, :func:`~geodino.data.batches.loader_workers`); the backbone runs
    under ``precision`` (``auto``, ``bf16``, ``fp32``: :func:`~geodino.utils.resolve_precision`),
    the features are returned in float32.
    """
    from tqdm.auto import tqdm

    from geodino.augment.modality import apply_modality_choice

    was_training = backbone.training
    backbone.eval()
    features: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    labels, order = [], []
    precision = resolve_precision(precision, device)
    loader = device_loader(dataset, batch_size, device, workers, shuffle=False)
    for batch in tqdm(loader, desc="features", unit="batch", disable=not progress):
        images = fit_size(standardise(batch["image"].to(device, non_blocking=True).float(), card), size)
        for choice in modalities:
            view = images if choice == ALL_BANDS else apply_modality_choice(images, card.modalities, choice, fill)
            with autocast_to(precision, device):
                embedded = embed(backbone, view)
            features[choice].append(embedded.float().cpu())
        labels.append(batch[label_key])
        if SAMPLE_INDEX in batch:
            order.append(batch[SAMPLE_INDEX])
    backbone.train(was_training)
    if not labels:
        raise ValueError("the dataset yielded no samples")
    sets, targets = {m: torch.cat(f) for m, f in features.items()}, torch.cat(labels)
    if order:  # several loader workers interleave an iterable dataset's samples: back in its order
        ranks = torch.argsort(torch.cat(order))
        sets, targets = {m: f[ranks] for m, f in sets.items()}, targets[ranks]
    for choice, values in sets.items():
        bad = ~torch.isfinite(values).all(dim=1)
        if bad.any():
            # A NaN feature has no nearest neighbour and poisons a probe: never score one.
            first = int(bad.nonzero()[0])
            raise ValueError(f"{int(bad.sum())} of {len(values)} feature vectors ({choice}) are not finite, the "
                             f"first at sample {first} of the data: a non-finite input or a diverged model")
    return sets, targets


def extract_features(
    backbone: Backbone,
    dataset: Dataset,
    card: DatasetCard,
    size: int,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    label_key: str = "label",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (CLS) and labels of every sample; each image is resized whole to ``size``."""
    sets, labels = extract_feature_sets(backbone, dataset, card, size, batch_size=batch_size, device=device,
                                        label_key=label_key)
    return sets[ALL_BANDS], labels


# -- caching ------------------------------------------------------------------------------------
def cache_key(**parts: Any) -> str:
    """A short stable digest of JSON-able parts (checkpoint identity, data, options)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def file_identity(path: str | Path) -> dict[str, Any]:
    """What tells two versions of a file apart without reading it: path, size, modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cached(cache_dir: str | Path | None, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()`` once per ``key``: the result (tensors, plain values) is kept in
    ``cache_dir/<key>.pt`` and loaded back with ``weights_only=True``. No ``cache_dir``: no cache."""
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{key}.pt"
    if path.is_file():
        try:
            result = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - a cut-short or foreign file: a miss, said aloud
            log.warning("feature cache %s cannot be read (%s): extracting the features again and replacing it",
                        path, one_line(err))
        else:
            log.info("features from cache %s", path)
            return result
    result = compute()
    save_torch(result, path)
    return result
