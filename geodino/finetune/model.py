"""A ViT backbone with a segmentation head, and its layer-wise learning-rate decay.

The backbone's blocks are read with timm's ``forward_intermediates`` (normed, as the DINO
features are evaluated) and reshaped to maps on the token grid; the head turns them into logits
at the input size. With ``freeze_backbone`` only the head trains and the backbone runs without
gradients.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn as nn

from geodino.models.backbone import Backbone


def default_levels(depth: int, count: int) -> list[int]:
    """``count`` block indices spread evenly over ``depth`` blocks, ending at the last one
    (12 blocks, 4 levels → 2, 5, 8, 11; a shallower backbone repeats blocks: 2 → 0, 0, 1, 1)."""
    return [max(0, math.ceil(depth * (i + 1) / count) - 1) for i in range(count)]


class SegmentationModel(nn.Module):
    def __init__(self, backbone: Backbone, head: nn.Module, levels: list[int] | None = None,
                 freeze_backbone: bool = False) -> None:
        super().__init__()
        if not backbone.is_vit:
            raise ValueError("segmentation fine-tuning needs a ViT backbone")
        self.backbone, self.head = backbone, head
        depth = len(backbone.model.blocks)
        needed = getattr(head, "levels_needed", 1)
        self.levels = list(levels) if levels else default_levels(depth, needed)
        if len(self.levels) != needed:
            raise ValueError(f"the head takes {needed} level(s), got blocks {self.levels}")
        if not all(0 <= i < depth for i in self.levels):
            raise ValueError(f"levels {self.levels} outside the backbone's {depth} blocks")
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            for p in backbone.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> SegmentationModel:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # a frozen backbone stays in inference mode (no drop-path)
        return self

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, D, h, w]`` maps of the chosen blocks."""
        blocks = sorted(set(self.levels))  # timm returns each block once, in depth order
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            maps = self.backbone.model.forward_intermediates(x, indices=blocks, norm=True,
                                                             intermediates_only=True, output_fmt="NCHW")
        return [maps[blocks.index(i)] for i in self.levels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K, H, W]`` of standardised images ``[B, C, H, W]``."""
        return self.head(self.feature_maps(x), tuple(x.shape[-2:]))


def vit_layer_id(name: str, depth: int) -> int:
    """0 for the embeddings, ``i + 1`` for block ``i``, ``depth + 1`` for what follows the blocks."""
    match = re.match(r"blocks\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    if name.startswith(("cls_token", "reg_token", "pos_embed", "patch_embed", "norm_pre", "mask_token")):
        return 0
    return depth + 1


def layer_decay_groups(model: SegmentationModel, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW parameter groups with an ``lr_scale`` each: the head 1, backbone layer ``l`` of
    ``L = depth + 1`` gets ``layer_decay^(L − l)`` (BEiT). Biases and 1-D parameters get no weight
    decay, the rule of :func:`geodino.engine.optim.param_groups`."""
    depth = len(model.backbone.model.blocks)
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("backbone.model."):
            scale = layer_decay ** (depth + 1 - vit_layer_id(name[len("backbone.model."):], depth))
        else:
            scale = 1.0
        decayed = not (name.endswith(".bias") or p.ndim == 1)
        groups.setdefault((scale, decayed), []).append(p)
    return [{"params": params, "lr_scale": scale, "weight_decay": weight_decay if decayed else 0.0}
            for (scale, decayed), params in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1]))]
