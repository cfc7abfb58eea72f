"""Segmentation heads on ViT maps, level choice and layer-wise learning-rate decay."""

from __future__ import annotations

import pytest
import torch

from geodino.finetune.heads import build_head
from geodino.finetune.model import SegmentationModel, default_levels, layer_decay_groups, vit_layer_id
from geodino.models import build_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


def _backbone(depth: int = 3):
    return build_backbone("vit_tiny_patch16_224", in_chans=5, img_size=32, patch_size=8, depth=depth)


@pytest.mark.parametrize("head", ["linear", "progressive", "upernet"])
def test_heads_give_logits_at_the_input_size(head: str) -> None:
    backbone = _backbone()
    model = SegmentationModel(backbone, build_head(head, 192, 7, 8, channels=32))
    logits = model(torch.randn(2, 5, 40, 24))  # not square, a 5x3 token grid (odd: pooling keeps borders)
    assert logits.shape == (2, 7, 40, 24)
    logits.mean().backward()
    assert backbone.model.blocks[-1].attn.qkv.weight.grad is not None


def test_levels() -> None:
    assert default_levels(12, 4) == [2, 5, 8, 11] and default_levels(2, 4) == [0, 0, 1, 1]
    model = SegmentationModel(_backbone(2), build_head("upernet", 192, 3, 8, channels=16))
    maps = model.feature_maps(torch.randn(1, 5, 32, 32))
    assert len(maps) == 4 and maps[0].shape == (1, 192, 4, 4) and torch.equal(maps[0], maps[1])


def test_layer_decay_and_frozen_backbone() -> None:
    assert [vit_layer_id(n, 3) for n in ("cls_token", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight",
                                         "blocks.2.norm1.bias", "norm.weight")] == [0, 0, 1, 3, 4]
    model = SegmentationModel(_backbone(), build_head("linear", 192, 4, 8))
    groups = layer_decay_groups(model, weight_decay=0.05, layer_decay=0.5)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    m = model.backbone.model
    assert scale_of[id(m.pos_embed)] == 0.5 ** 4 and scale_of[id(m.blocks[2].mlp.fc1.weight)] == 0.5
    assert scale_of[id(m.norm.weight)] == 1.0 and scale_of[id(model.head.classifier.weight)] == 1.0
    assert decay_of[id(m.blocks[0].attn.qkv.bias)] == 0.0 and decay_of[id(m.pos_embed)] == 0.05
    frozen = SegmentationModel(_backbone(), build_head("linear", 192, 4, 8), freeze_backbone=True).train()
    assert not frozen.backbone.training and frozen.head.training
    assert all(not p.requires_grad for p in frozen.backbone.parameters())
    assert {id(p) for g in layer_decay_groups(frozen, 0.05, 0.5) for p in g["params"]} == \
        {id(p) for p in frozen.head.parameters()}
