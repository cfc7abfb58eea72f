"""Frozen-feature extraction: whole images, standardised with the dataset card, through a backbone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from geodino.data.card import DatasetCard
from geodino.models.backbone import Backbone


def standardise(images: torch.Tensor, card: DatasetCard) -> torch.Tensor:
    """``(x − mean) / std`` per band, with the card's statistics."""
    if card.mean is None or card.std is None:
        raise ValueError(f"dataset card {card.name!r} has no statistics; run `geodino stats` first")
    if images.shape[1] != card.num_bands:
        raise ValueError(f"images have {images.shape[1]} bands, card {card.name!r} lists {card.num_bands}")
    mean = torch.tensor(card.mean, device=images.device, dtype=images.dtype)[None, :, None, None]
    std = torch.tensor(card.std, device=images.device, dtype=images.dtype)[None, :, None, None]
    return (images - mean) / std


@torch.no_grad()
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
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images = standardise(batch["image"].to(device).float(), card)
        if images.shape[-1] != size or images.shape[-2] != size:
            images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        features.append(backbone(images).cls.float().cpu())
        labels.append(batch[label_key])
    backbone.train(was_training)
    return torch.cat(features), torch.cat(labels)
