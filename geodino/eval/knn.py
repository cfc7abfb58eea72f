"""Weighted k-nearest-neighbour classification on L2-normalised features (Wu et al. 2018, as in DINO).

Each query takes its ``k`` most cosine-similar training features; neighbour ``j`` votes for its
class with weight ``exp(sim_j / T)``. Nothing about the class count is hard-coded: it is read
from the labels. Multi-label data (multi-hot ``[N, K]`` labels, e.g. BigEarthNet-19) votes for
every class a neighbour carries; the share of the vote weight a class receives is its score,
ranked into average precision.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger("geodino")


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Class scores ``[Q, num_classes]`` for each query (higher = more votes), on the CPU.

    ``train_labels`` are class indices ``[N]`` or multi-hot ``[N, num_classes]``. ``k`` larger than
    the training set uses all of it. ``device``: where the similarities are computed (default: the
    features' own device); the bank goes there once, the queries ``chunk`` at a time.
    """
    device = torch.device(device) if device is not None else train_features.device
    train = F.normalize(train_features.to(device).float(), dim=1)
    train_labels = train_labels.to(device)
    multi_hot = train_labels.ndim == 2
    if multi_hot and train_labels.shape[1] != num_classes:
        raise ValueError(f"multi-hot labels have {train_labels.shape[1]} classes, not {num_classes}")
    k = min(k, train.shape[0])
    scores = []
    for start in range(0, query_features.shape[0], chunk):
        query = F.normalize(query_features[start : start + chunk].to(device).float(), dim=1)
        sim, idx = (query @ train.t()).topk(k, dim=1)
        weights = (sim / temperature).exp()
        if multi_hot:
            votes = torch.einsum("qk,qkc->qc", weights, train_labels[idx].float())
        else:
            votes = torch.zeros(query.shape[0], num_classes, device=query.device)
            votes.scatter_add_(1, train_labels[idx], weights)
        scores.append(votes.cpu())
    return torch.cat(scores)


def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) of the weighted k-NN classifier on single-label data."""
    num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    from geodino.eval.metrics import topk_accuracy

    votes = knn_predict(train_features, train_labels, val_features, num_classes, k, temperature, device=device)
    return {
        **topk_accuracy(votes, val_labels, (1, 5)),
        **_run_info(k, train_features, val_features),
    }


def _run_info(k: int, train_features: torch.Tensor, val_features: torch.Tensor) -> dict[str, int]:
    """What the scores were computed with: the ``k`` used (at most the bank's size, with the
    ``k`` asked for beside it when the bank was smaller) and the sizes of bank and queries."""
    n = int(train_features.shape[0])
    info = {"k": min(k, n), "num_train": n, "num_val": int(val_features.shape[0])}
    if k > n:
        log.warning("k-NN: the bank holds %d samples, fewer than k=%d: every one of them votes", n, k)
        info["k_requested"] = k
    return info


def knn_multilabel_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Micro/macro mAP and F1 (%) of the weighted k-NN on multi-hot labels.

    A class's score is the share of the neighbours' vote weight that carries it (in [0, 1]); F1
    predicts the classes with at least half of the weight.
    """
    from geodino.eval.metrics import multilabel_scores

    num_classes = train_labels.shape[1]
    # One extra class that every neighbour carries collects each query's total vote weight.
    with_total = torch.cat([train_labels.float(), torch.ones(len(train_labels), 1)], dim=1)
    votes = knn_predict(train_features, with_total, val_features, num_classes + 1, k, temperature, device=device)
    share = votes[:, :num_classes] / votes[:, num_classes:].clamp_min(1e-12)
    return {
        **multilabel_scores(share, val_labels, threshold=0.5),
        **_run_info(k, train_features, val_features),
    }


def knn_evaluate(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Top-1/top-5 for class indices, mAP and F1 for multi-hot labels; similarities on ``device``."""
    if train_labels.ndim == 2:
        return knn_multilabel_scores(train_features, train_labels, val_features, val_labels, k, temperature, device)
    return knn_scores(train_features, train_labels, val_features, val_labels, k, temperature, device)
