"""Weighted k-nearest-neighbour classification on L2-normalised features (Wu et al. 2018, as in DINO).

Each query takes its ``k`` most cosine-similar training features; neighbour ``j`` votes for its
class with weight ``exp(sim_j / T)``. Nothing about the class count is hard-coded: it is read
from the labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class scores ``[Q, num_classes]`` for each query (higher = more votes)."""
    train = F.normalize(train_features.float(), dim=1)
    k = min(k, train.shape[0])
    scores = []
    for start in range(0, query_features.shape[0], chunk):
        query = F.normalize(query_features[start : start + chunk].float(), dim=1)
        sim, idx = (query @ train.t()).topk(k, dim=1)
        weights = (sim / temperature).exp()
        votes = torch.zeros(query.shape[0], num_classes, device=query.device)
        votes.scatter_add_(1, train_labels[idx], weights)
        scores.append(votes)
    return torch.cat(scores)


def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) of the weighted k-NN classifier on single-label data."""
    num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    votes = knn_predict(train_features, train_labels, val_features, num_classes, k, temperature)
    top = votes.topk(min(5, num_classes), dim=1).indices
    hit = top == val_labels[:, None]
    return {
        "top1": 100.0 * hit[:, 0].float().mean().item(),
        "top5": 100.0 * hit.any(1).float().mean().item(),
        "k": k,
        "num_train": int(train_features.shape[0]),
        "num_val": int(val_features.shape[0]),
    }
