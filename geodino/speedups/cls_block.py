"""A ViT's last block computed for the CLS token alone.

The image-level DINO loss reads only the CLS token of the last block's output. In that block the
other tokens still provide keys and values, but their queries, their attention output, their
projection and their MLP feed nothing the loss reads. :func:`cls_only_block` leaves those out:
the CLS output is the same as the full block's (up to float rounding), at about a sixth of the
block's forward FLOPs (ViT-Tiny/16, 16 crops at 224: 0.48 instead of 2.79 GFLOP; BENCHMARKS.md
says what it gives the training step).

Only timm's standard ``Block`` with its ``Attention`` is handled; :func:`supports_cls_only` says
whether a block qualifies, and callers fall back to the full block otherwise.
``GEODINO_CLS_ONLY=0`` (or ``GEODINO_SPEEDUPS=off``) always takes the full block.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block

from geodino.speedups.packing import Layout, cls_only_rows, plain_block
from geodino.speedups.switch import feature_on


def supports_cls_only(block: nn.Module) -> bool:
    """True for a timm ViT ``Block`` whose attention is timm's plain ``Attention`` (no gating),
    unless ``GEODINO_CLS_ONLY=0`` or ``GEODINO_SPEEDUPS=off``."""
    return feature_on("GEODINO_CLS_ONLY") and plain_block(block)


def cls_only_block(block: Block, tokens: torch.Tensor) -> torch.Tensor:
    """``block(tokens)[:, :1]`` for ``tokens`` ``[B, N, D]`` (CLS first), without the other rows."""
    b, n, width = tokens.shape
    return cls_only_rows(block, tokens.reshape(b * n, width), Layout(((b, n),))).unsqueeze(1)
