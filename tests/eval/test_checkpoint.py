"""The teacher backbone of a checkpoint, rebuilt from its recipe."""

from __future__ import annotations

import pytest
import torch

from geodino.eval.checkpoint import load_teacher_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


def test_teacher_backbone_weights_and_card(synthetic_checkpoint) -> None:
    backbone, card, cfg = load_teacher_backbone(synthetic_checkpoint)
    teacher = torch.load(synthetic_checkpoint, weights_only=True)["teacher"]
    assert card.name == "synthetic-sar-optical" and card.num_bands == 8 and cfg["model"]["depth"] == 2
    for name, value in backbone.state_dict().items():
        torch.testing.assert_close(value, teacher[f"backbone.{name}"], rtol=0, atol=0)
    assert not backbone.training and backbone.patch_size == 8


def test_a_card_of_other_bands_is_refused(synthetic_checkpoint) -> None:
    with pytest.raises(ValueError, match=r"the backbone takes 8 bands, the card 'bigearthnet-v1' lists 14: give the card"):
        load_teacher_backbone(synthetic_checkpoint, card="bigearthnet-v1")
