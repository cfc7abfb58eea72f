"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from geodino.eval.metrics import (
    average_precision,
    confusion_matrix,
    multilabel_average_precision,
    multilabel_f1,
    segmentation_scores,
    topk_accuracy,
)


def test_average_precision_by_hand() -> None:
    # hits at ranks 1 and 3: AP = ½·1 + ½·⅔
    ap = average_precision(torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([1, 0, 1, 0]))
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_tied_scores_enter_together() -> None:
    # the positive ties with a negative: one threshold at 0.5 with precision ⅓
    assert average_precision(torch.tensor([0.9, 0.5, 0.5]), torch.tensor([0, 1, 0])) == pytest.approx(1 / 3)
    assert math.isnan(average_precision(torch.tensor([0.3, 0.2]), torch.tensor([0, 0])))


def test_multilabel_map_micro_macro() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.1], [0.6, 0.7, 0.2]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0]])  # class 2 never occurs
    result = multilabel_average_precision(scores, targets)
    assert result["map_macro"] == pytest.approx(100.0)  # both present classes ranked perfectly
    assert result["classes_evaluated"] == 2
    # pooled: 0.9+ 0.8+ 0.7- 0.6+ 0.3- ... → precision 1, 1, ¾ at the three hits
    assert result["map_micro"] == pytest.approx(100 * (1 + 1 + 0.75) / 3)


def test_multilabel_f1() -> None:
    predicted = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    result = multilabel_f1(predicted, targets)
    assert result["f1_micro"] == pytest.approx(100 * 6 / 7)  # tp 3, fp 1, fn 0
    assert result["f1_macro"] == pytest.approx(100 * (1 + 2 / 3) / 2)  # class 2: neither, left out


def test_topk_accuracy_caps_k() -> None:
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.6, 0.4]])
    assert topk_accuracy(scores, torch.tensor([1, 1, 0])) == {"top1": pytest.approx(200 / 3), "top5": 100.0}


def test_iou_with_ignore_index() -> None:
    target = torch.tensor([[0, 0, 1], [1, 255, 2]])
    predicted = torch.tensor([[0, 1, 1], [1, 2, 2]])  # the ignored pixel's prediction counts nowhere
    confusion = confusion_matrix(predicted, target, num_classes=4)
    assert confusion.sum() == 5
    scores = segmentation_scores(confusion, ["a", "b", "c", "d"])
    assert scores["per_class_iou"] == {"a": pytest.approx(50.0), "b": pytest.approx(200 / 3), "c": 100.0, "d": None}
    assert scores["miou"] == pytest.approx((50 + 200 / 3 + 100) / 3)  # class d absent: not averaged
    assert scores["overall_accuracy"] == pytest.approx(80.0)

