"""Linear probe on frozen features: one linear layer trained on cached embeddings.

Features are standardised with the training set's per-dimension mean and standard deviation (a
batch norm without affine parameters, as MAE's probe does), so one learning rate suits any
backbone and any feature scale; the layer is trained with AdamW and a cosine schedule. Single-label
data uses cross-entropy and reports top-1/top-5 accuracy; multi-label (multi-hot) data uses binary
cross-entropy and reports micro/macro mAP and F1 at probability 0.5.

DINO's own probe trains on augmented images (SGD, 100 epochs); cached features cannot be
augmented, which is what makes the probe cheap enough to run for every modality choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from geodino.eval.metrics import multilabel_scores, topk_accuracy
from geodino.utils import torch_threads


@dataclass
class ProbeSettings:
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    seed: int = 0


def train_linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    settings: ProbeSettings | None = None,
    num_classes: int | None = None,
) -> nn.Module:
    """A trained ``Sequential(standardise, Linear)`` mapping features to class logits."""
    s = settings or ProbeSettings()
    multi_label = train_labels.ndim == 2
    if num_classes is None:
        num_classes = train_labels.shape[1] if multi_label else int(train_labels.max()) + 1
    x = train_features.float()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    probe = nn.Sequential(_Standardise(mean, std), nn.Linear(x.shape[1], num_classes))
    generator = torch.Generator().manual_seed(s.seed)
    with torch.no_grad():
        layer = probe[1]
        layer.weight.normal_(0, 0.01, generator=generator)
        layer.bias.zero_()
    targets = train_labels.float() if multi_label else train_labels.long()
    # The probe's matrix products are tiny: spread over cores that other jobs keep busy they ran
    # 100x slower here (22 s against 0.2 s on one thread).
    with torch_threads(1):
        _fit(probe, x, targets, multi_label, s, generator)
    return probe.eval()


def _fit(probe: nn.Module, x: torch.Tensor, targets: torch.Tensor, multi_label: bool, s: ProbeSettings,
         generator: torch.Generator) -> None:
    optimizer = torch.optim.AdamW(probe.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    n = x.shape[0]
    batch = min(s.batch_size, n)
    steps = s.epochs * -(-n // batch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    for _ in range(s.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            logits = probe(x[idx])
            if multi_label:
                loss = F.binary_cross_entropy_with_logits(logits, targets[idx])
            else:
                loss = F.cross_entropy(logits, targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()


@torch.no_grad()
def probe_scores(probe: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The probe's metrics on labelled features."""
    logits = probe(features.float())
    if labels.ndim == 2:
        return multilabel_scores(torch.sigmoid(logits), labels, threshold=0.5)
    return topk_accuracy(logits, labels, (1, 5))


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    settings: ProbeSettings | None = None,
) -> dict[str, float]:
    """Train on one set, score on the other; the class count comes from the labels of both."""
    if train_labels.ndim == 2:
        num_classes = train_labels.shape[1]
    else:
        num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    probe = train_linear_probe(train_features, train_labels, settings, num_classes)
    return {**probe_scores(probe, val_features, val_labels), "num_train": int(train_features.shape[0]),
            "num_val": int(val_features.shape[0]), "feature_dim": int(train_features.shape[1])}


class _Standardise(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
