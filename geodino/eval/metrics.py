"""Scores of predictions against labels: classification (single- and multi-label) and segmentation.

Conventions shared by every evaluation in geodino:

- *average precision* (AP) of one class ranks the samples by score and averages the precision
  at each distinct score threshold, weighted by the recall gained there
  (``AP = Σ (Rₙ − Rₙ₋₁) Pₙ``, samples with tied scores enter together);
- *macro* averages are over the classes that occur in the evaluated labels (a class absent from a
  small validation set has no defined AP or IoU and is left out, not counted as 0); *micro*
  averages pool every (sample, class) decision;
- segmentation pixels labelled ``ignore_index`` count nowhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """AP of one ranking: ``scores`` and boolean ``targets`` of shape ``[N]``; NaN without positives."""
    scores = scores.double().flatten()
    targets = targets.flatten().bool()
    positives = int(targets.sum())
    if positives == 0:
        return math.nan
    order = torch.argsort(scores, descending=True, stable=True)
    scores, hits = scores[order], targets[order].double()
    tp = torch.cumsum(hits, 0)
    seen = torch.arange(1, len(hits) + 1, dtype=torch.float64)
    # Only the last position of a run of tied scores is a threshold one can actually set.
    last_of_tie = torch.ones_like(hits, dtype=torch.bool)
    last_of_tie[:-1] = scores[1:] != scores[:-1]
    tp, seen = tp[last_of_tie], seen[last_of_tie]
    precision = tp / seen
    recall = tp / positives
    recall_gain = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((recall_gain * precision).sum())


def multilabel_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Micro and macro mAP (%) of ``[N, K]`` scores against ``[N, K]`` multi-hot targets."""
    targets = targets.bool()
    per_class = [average_precision(scores[:, c], targets[:, c]) for c in range(targets.shape[1])]
    present = [ap for ap in per_class if not math.isnan(ap)]
    return {
        "map_micro": 100.0 * average_precision(scores.flatten(), targets.flatten()),
        "map_macro": 100.0 * sum(present) / len(present) if present else math.nan,
        "classes_evaluated": len(present),
    }


def multilabel_f1(predicted: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Micro and macro F1 (%) of boolean ``[N, K]`` decisions; macro over classes that occur in the
    targets or the predictions (a class neither predicted nor present says nothing)."""
    predicted, targets = predicted.bool(), targets.bool()
    tp = (predicted & targets).sum(0).double()
    fp = (predicted & ~targets).sum(0).double()
    fn = (~predicted & targets).sum(0).double()
    denominator = 2 * tp + fp + fn
    micro = 2 * tp.sum() / denominator.sum() if denominator.sum() > 0 else torch.tensor(math.nan)
    seen = denominator > 0
    macro = (2 * tp[seen] / denominator[seen]).mean() if seen.any() else torch.tensor(math.nan)
    return {"f1_micro": 100.0 * float(micro), "f1_macro": 100.0 * float(macro)}


def multilabel_scores(scores: torch.Tensor, targets: torch.Tensor, threshold: float) -> dict[str, float]:
    """mAP (micro, macro) from the scores and F1 (micro, macro) of ``scores >= threshold``."""
    return {**multilabel_average_precision(scores, targets), **multilabel_f1(scores >= threshold, targets)}


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy (%) of ``[N, K]`` class scores; ``k`` is capped at the class count."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hit = top == labels.long()[:, None]
    return {f"top{k}": 100.0 * hit[:, :k].any(1).float().mean().item() for k in ks}


# -- segmentation -------------------------------------------------------------------------------
def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """``[K, K]`` int64 counts, rows = true class, columns = predicted, ignoring ``ignore_index``
    pixels (and any target outside ``[0, K)``)."""
    target = target.flatten().long()
    predicted = predicted.flatten().long()
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    pairs = target[keep] * num_classes + predicted[keep]
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(confusion: torch.Tensor, class_names: Sequence[str] | None = None) -> dict:
    """Macro mIoU (%) over the classes present in the ground truth, per-class IoU (%, None for a
    class never seen nor predicted) and overall pixel accuracy (%)."""
    confusion = confusion.double()
    tp = confusion.diag()
    true = confusion.sum(1)
    union = true + confusion.sum(0) - tp
    names = list(class_names) if class_names else [str(i) for i in range(len(tp))]
    if len(names) < len(tp):
        names += [str(i) for i in range(len(names), len(tp))]
    per_class = {names[c]: (100.0 * float(tp[c] / union[c]) if union[c] > 0 else None) for c in range(len(tp))}
    present = true > 0
    miou = 100.0 * float((tp[present] / union[present]).mean()) if present.any() else math.nan
    total = float(confusion.sum())
    return {
        "miou": miou,
        "overall_accuracy": 100.0 * float(tp.sum()) / total if total else math.nan,
        "per_class_iou": per_class,
        "classes_evaluated": int(present.sum()),
        "pixels": int(total),
    }
