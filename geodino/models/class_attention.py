"""Class-attention pooling: a learnable summary token that reads a set of tokens (CaiT-style).

Touvron et al., "Going deeper with Image Transformers" (CaiT, ICCV 2021) introduced class-attention
blocks, where only a summary token queries and the other tokens are read but never updated.
SelfPatch (Yun et al., CVPR 2022) uses two such blocks, with their own summary token and a final
LayerNorm, to summarise a patch's most similar neighbours; :class:`SummaryAggregator` is that module.

The blocks take the context tokens' keys and values precomputed (:meth:`ClassAttentionBlock.keys_values`),
so a caller that summarises many overlapping sets (every patch's neighbours) projects each token
once and gathers the projections, instead of projecting every token once per set it belongs to.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ClassAttentionBlock(nn.Module):
    """Pre-norm block: the summary attends to itself and the context, then goes through an MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def keys_values(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[..., M, D]`` context tokens → ``[..., M, 2D]`` keys then values."""
        return self.kv(self.norm1(tokens))

    def forward(self, summary: torch.Tensor, context_kv: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """Update ``summary`` ``[S, D]`` from ``context_kv`` ``[S, M, 2D]``.

        ``valid`` ``[S, M]`` marks the context tokens to read; the summary always reads itself,
        so a set with no valid token leaves it well defined.
        """
        s, h = summary.shape[0], self.num_heads
        d = summary.shape[-1]
        normed = self.norm1(summary)
        kv = torch.cat([self.kv(normed).unsqueeze(1), context_kv], dim=1)  # [S, 1+M, 2D]
        k, v = kv.view(s, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)  # each [S, h, 1+M, d/h]
        q = self.q(normed).view(s, h, 1, d // h)
        mask = None
        if valid is not None:
            mask = torch.cat([valid.new_ones(s, 1), valid], dim=1)[:, None, None, :]  # [S, 1, 1, 1+M]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [S, h, 1, d/h]
        summary = summary + self.proj(attended.reshape(s, d))
        return summary + self.mlp(self.norm2(summary))


class SummaryAggregator(nn.Module):
    """A learnable summary token, ``depth`` class-attention blocks and a LayerNorm.

    ``pool(tokens)`` summarises every token of each item; ``pool_sets(tokens, index, valid)``
    summarises, for every position, the tokens that ``index`` picks (e.g. a patch's neighbours).

    Example:
        >>> agg = SummaryAggregator(64, depth=2)
        >>> agg.pool(torch.randn(2, 9, 64)).shape
        torch.Size([2, 64])
    """

    def __init__(self, dim: int, depth: int = 2, num_heads: int | None = None, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        # The backbone's head width (64 for ViT-T/S/B) unless told otherwise.
        num_heads = num_heads or (dim // 64 if dim % 64 == 0 and dim >= 64 else 1)
        self.summary_token = nn.Parameter(torch.zeros(1, dim))
        self.blocks = nn.ModuleList(ClassAttentionBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.summary_token, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, M, D]`` → ``[B, D]``."""
        summary = self.summary_token.expand(tokens.shape[0], -1)
        for block in self.blocks:
            summary = block(summary, block.keys_values(tokens))
        return self.norm(summary)

    def pool_sets(self, tokens: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``tokens`` ``[B, N, D]``, ``index``/``valid`` ``[B, N, k]`` → ``[B, N, D]``.

        Position ``n`` of item ``b`` gets the summary of ``tokens[b, index[b, n, valid[b, n]]]``.
        """
        b, n, k = index.shape
        rows = torch.arange(b, device=index.device).view(b, 1, 1)
        summary = self.summary_token.expand(b * n, -1)
        for block in self.blocks:
            context = block.keys_values(tokens)[rows, index]  # [B, N, k, 2D]
            summary = block(summary, context.reshape(b * n, k, -1), valid.reshape(b * n, k))
        return self.norm(summary).view(b, n, -1)
