"""Linear probe on features whose classes a linear layer can separate; deterministic subsampling."""

from __future__ import annotations

import pytest
import torch

from geodino.eval.data import subsample_indices
from geodino.eval.linear import ProbeSettings, linear_probe

pytestmark = pytest.mark.usefixtures("one_thread")


def _clusters(n: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, 16, generator=torch.Generator().manual_seed(99)) * 4 + 100  # offset, scale
    y = torch.arange(n) % classes
    return centers[y] + torch.randn(n, 16, generator=g), y


def test_single_label_probe() -> None:
    train_x, train_y = _clusters(120, 6, 0)
    val_x, val_y = _clusters(30, 6, 1)
    result = linear_probe(train_x, train_y, val_x, val_y, ProbeSettings(epochs=30))
    assert result["top1"] == 100.0 and result["feature_dim"] == 16


def test_multi_label_probe() -> None:
    train_x, train_y = _clusters(120, 4, 0)
    val_x, val_y = _clusters(40, 4, 1)
    multi = lambda y: torch.nn.functional.one_hot(y, 5).float()  # noqa: E731 - class 4 never occurs
    result = linear_probe(train_x, multi(train_y), val_x, multi(val_y), ProbeSettings(epochs=30, batch_size=32))
    assert result["map_macro"] > 99 and result["f1_micro"] > 95 and result["classes_evaluated"] == 4


def test_label_fraction_is_seeded() -> None:
    a, b = subsample_indices(300, 0.01, seed=3), subsample_indices(300, 0.01, seed=3)
    assert torch.equal(a, b) and len(a) == 3 and torch.equal(a, a.sort().values)
    assert not torch.equal(a, subsample_indices(300, 0.01, seed=4))
    assert len(subsample_indices(10, 0.01, 0)) == 1 and len(subsample_indices(10, 1.0, 0)) == 10
