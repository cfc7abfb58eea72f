"""Modality masking and fixed modality choices (geodino/augment/modality.py)."""

from __future__ import annotations

import pytest
import torch

from geodino.augment.modality import (
    apply_modality_choice,
    apply_modality_drop,
    channel_table,
    sample_modality_drop,
)
from geodino.rng import RowRandom

MODALITIES = {"s2": list(range(12)), "s1": [12, 13]}


def test_channel_table_and_validation() -> None:
    table = channel_table(MODALITIES, 14)
    assert table.shape == (2, 14) and table[0, :12].all() and not table[0, 12:].any() and table[1, 12:].all()
    with pytest.raises(ValueError):
        channel_table({"a": [0, 1], "b": [1]}, 3)  # overlapping
    with pytest.raises(ValueError):
        channel_table({"a": [5]}, 3)  # out of range


def test_drop_fills_the_chosen_modality_only() -> None:
    z = torch.randn(3, 14, 4, 4)
    dropped = torch.tensor([-1, 0, 1])
    out = apply_modality_drop(z, dropped, channel_table(MODALITIES, 14), fill=-3.0)
    assert torch.equal(out[0], z[0])
    assert (out[1, :12] == -3.0).all() and torch.equal(out[1, 12:], z[1, 12:])
    assert (out[2, 12:] == -3.0).all() and torch.equal(out[2, :12], z[2, :12])
    assert apply_modality_drop(z, torch.full((3,), -1), channel_table(MODALITIES, 14), 0.0) is z


def test_sample_modality_drop_frequencies() -> None:
    d = sample_modality_drop(RowRandom(0, 0, 40000), 1, 2, 0.5)[0]
    for value, p in [(-1, 0.5), (0, 0.25), (1, 0.25)]:
        freq = (d == value).double().mean().item()
        assert abs(freq - p) < 5 * (p * (1 - p) / 40000) ** 0.5


def test_apply_modality_choice() -> None:
    z = torch.randn(2, 15, 4, 4)  # channel 14 belongs to no modality and is always kept
    optical = apply_modality_choice(z, MODALITIES, "s2", fill=0.0)
    assert torch.equal(optical[:, :12], z[:, :12]) and (optical[:, 12:14] == 0).all()
    assert torch.equal(optical[:, 14], z[:, 14])
    sar = apply_modality_choice(z, MODALITIES, "s1", fill=1.5)
    assert (sar[:, :12] == 1.5).all() and torch.equal(sar[:, 12:], z[:, 12:])
    assert torch.equal(apply_modality_choice(z, MODALITIES, "s2+s1"), z)
    assert torch.equal(apply_modality_choice(z, MODALITIES, ["s1", "s2"]), z)
    with pytest.raises(ValueError):
        apply_modality_choice(z, MODALITIES, "s3")
