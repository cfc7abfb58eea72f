"""Runs a backbone and head over a list of crops, batching crops of the same size together."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import torch
import torch.nn as nn

from geodino.models.backbone import Backbone, BackboneOutput


@dataclass
class MultiCropOutput:
    logits: list[torch.Tensor]  # one [B, K] tensor per view, in view order
    features: list[BackboneOutput]  # backbone output per view (CLS and patch tokens)


class MultiCropWrapper(nn.Module):
    """Backbone + head over multi-crop views.

    Consecutive views of the same spatial size go through the backbone in one call (as in the
    reference DINO); the head runs once on all CLS embeddings. Extra heads (patch-level objectives)
    are registered by name in ``extra_heads`` so that they are trained, checkpointed and averaged
    into the teacher together with the rest.
    """

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.extra_heads = nn.ModuleDict()

    def forward(self, views: list[torch.Tensor]) -> MultiCropOutput:
        features: list[BackboneOutput] = []
        for _, same_size in groupby(views, key=lambda v: tuple(v.shape[-2:])):
            same_size = list(same_size)
            sizes = [v.shape[0] for v in same_size]
            out = self.backbone(torch.cat(same_size))
            patches = out.patches.split(sizes) if out.patches is not None else [None] * len(sizes)
            for cls, tokens in zip(out.cls.split(sizes), patches):
                features.append(BackboneOutput(cls=cls, patches=tokens, grid=out.grid))
        logits = self.head(torch.cat([f.cls for f in features]))
        return MultiCropOutput(logits=list(logits.split([v.shape[0] for v in views])), features=features)
