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
import torch.nn.functional as F
from timm.layers import Attention
from timm.models.vision_transformer import Block

from geodino.speedups import onednn_linear
from geodino.speedups.switch import feature_on


def supports_cls_only(block: nn.Module) -> bool:
    """True for a timm ViT ``Block`` whose attention is timm's plain ``Attention`` (no gating),
    unless ``GEODINO_CLS_ONLY=0`` or ``GEODINO_SPEEDUPS=off``."""
    return (feature_on("GEODINO_CLS_ONLY") and type(block) is Block and type(block.attn) is Attention
            and getattr(block.attn, "gate", None) is None)


def cls_only_block(block: Block, tokens: torch.Tensor) -> torch.Tensor:
    """``block(tokens)[:, :1]`` for ``tokens`` ``[B, N, D]`` (CLS first), without the other rows."""
    attn = block.attn
    b, n, _ = tokens.shape
    heads, head_dim, width = attn.num_heads, attn.head_dim, attn.attn_dim
    h = block.norm1(tokens)
    weight, bias = attn.qkv.weight, attn.qkv.bias
    project = onednn_linear.linear if isinstance(attn.qkv, onednn_linear.OneDNNLinear) else F.linear
    # timm's qkv projection stacks the query, key and value weights in that order. A split, not two
    # slices: its backward is one concatenation, where each slice's fills a zero buffer the size of
    # the whole weight and the two are then added.
    w_q, w_kv = weight.split([width, weight.shape[0] - width])
    b_q, b_kv = (None, None) if bias is None else bias.split([width, bias.shape[0] - width])
    q = project(h[:, :1], w_q, b_q)
    kv = project(h, w_kv, b_kv)
    q = q.reshape(b, 1, heads, head_dim).transpose(1, 2)
    k, v = kv.reshape(b, n, 2, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    dropout = attn.attn_drop.p if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=attn.scale)
    out = attn.proj_drop(attn.proj(attn.norm(out.transpose(1, 2).reshape(b, 1, width))))
    cls = tokens[:, :1] + block.drop_path1(block.ls1(out))
    return cls + block.drop_path2(block.ls2(block.mlp(block.norm2(cls))))
