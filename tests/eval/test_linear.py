"""Linear probe on features whose classes a linear layer can separate; deterministic subsampling."""

from __future__ import annotations

import pytest
import torch

from geodino.eval.data import subsample_indices
from geodino.eval.linear import FALLBACK_LR, ProbeSettings, choose_lr, linear_probe

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


def test_rate_is_chosen_on_held_out_training_samples(caplog) -> None:
    # Two epochs at 1e-6 leave the layer at its initialisation (chance); at 0.1 the clusters separate.
    train_x, train_y = _clusters(200, 5, 0)
    val_x, val_y = _clusters(50, 5, 1)
    with caplog.at_level("WARNING", logger="geodino"):
        lr, scores = choose_lr(train_x, train_y, ProbeSettings(epochs=2, lrs=(0.1, 1e-6)))
    assert "the chosen lr 0.1 is the largest candidate" in caplog.text
    assert lr == 0.1 and list(scores) == ["1e-06", "0.1"]  # every candidate scored, smallest first
    assert scores["0.1"] == 100.0 and scores["1e-06"] < 60
    result = linear_probe(train_x, train_y, val_x, val_y, ProbeSettings(epochs=2, lrs=(0.1, 1e-6)))
    assert result["lr"] == 0.1 and result["top1"] == 100.0
    assert result["lr_selection"] == {"metric": "top1", "held_out": 0.2, "scores": scores}


def test_rate_choice_never_sees_the_queries() -> None:
    # Queries whose labels are permuted would favour no rate; the choice must not move with them.
    train_x, train_y = _clusters(200, 5, 0)
    val_x, val_y = _clusters(50, 5, 1)
    settings = ProbeSettings(epochs=2, lrs=(0.1, 1e-6))
    honest = linear_probe(train_x, train_y, val_x, val_y, settings)
    shuffled = linear_probe(train_x, train_y, val_x, val_y[torch.randperm(50)], settings)
    assert honest["lr_selection"] == shuffled["lr_selection"] and shuffled["top1"] < 60


def test_multi_label_ranks_by_micro_map_and_ties_go_to_the_lower_held_out_loss() -> None:
    # Both rates rank every held-out sample right (mAP 100); the one trained further fits better.
    train_x, train_y = _clusters(200, 4, 0)
    multi = torch.nn.functional.one_hot(train_y, 4).float()
    lr, scores = choose_lr(train_x, multi, ProbeSettings(epochs=20, lrs=(0.03, 1e-3)))
    assert scores["0.001"] == scores["0.03"] == 100.0 and lr == 0.03


def test_one_rate_is_used_as_given_and_a_tiny_set_falls_back_loudly(caplog) -> None:
    train_x, train_y = _clusters(30, 3, 0)
    assert choose_lr(train_x, train_y, ProbeSettings(lrs=(0.5,))) == (0.5, {})
    with caplog.at_level("WARNING", logger="geodino"):
        lr, scores = choose_lr(train_x, train_y, ProbeSettings(epochs=1))
    assert (lr, scores) == (FALLBACK_LR, {}) and "30 training samples are too few" in caplog.text
    with pytest.raises(ValueError, match="must be positive"):
        ProbeSettings(lrs=(0.1, -1.0))
