"""Class-attention pooling: a learnable summary token that reads a set of tokens (CaiT-style).

Touvron et al., "Going deeper with Image Transformers" (CaiT, ICCV 2021) introduced class-attention
blocks, where only a summary token queries and the other tokens are read but never updated.
SelfPatch (Yun et al., CVPR 2022) uses two such blocks, with their own summary token and a final
LayerNorm, to summarise a patch's most similar neighbours; :class:`SummaryAggregator` is that module.

The aggregator works on token *rows*: the patch tokens of every crop, flattened and concatenated.
Each block projects every row to keys and values once, and all the summaries asked for in one call
(the summary of each crop, the summary of each patch's neighbour set, over crops of several sizes)
share the block's linear layers and MLP in one batch; only the attention itself runs once per
context length. The result is the same as pooling each set alone (tested), in a few dozen launches
per block instead of a few dozen per crop size and kind of summary (issue 14).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from geodino.utils import split_heads


class Pool(NamedTuple):
    """``items`` summaries of consecutive runs of ``tokens`` rows from row ``start``: item ``i``
    reads rows ``start + i * tokens`` up to, not including, ``start + (i + 1) * tokens``."""

    start: int
    items: int
    tokens: int


class Contexts(NamedTuple):
    """Who reads what, as positions in a block's table of ``S`` summaries then ``R`` token rows.

    The summaries come in groups of ``sizes``. If ``index`` is set, the first group's summary
    ``s`` reads the table rows ``index[s, mask[s, 0, 0, 1:]]`` (already offset by ``S``); then
    each pool's items read their own runs of token rows (the rows cut at every pool's edges are
    ``cuts``; pool ``i`` is piece ``pieces[i]``).
    """

    sizes: list[int]
    index: torch.Tensor | None
    mask: torch.Tensor | None
    pools: Sequence[Pool]
    cuts: list[int]
    pieces: list[int]

    def split(self, kv: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], list[tuple[torch.Tensor, torch.Tensor | None]]]:
        """From the table's keys and values ``kv`` ``[S + R, 2D]``: each group's own ``[S_i, 1, 2D]``,
        and its ``(context_kv, mask)``, keys and values ``[S_i, M_i, 2D]``. One split (its backward
        is one concatenation, where a split per level would be one each)."""
        parts = kv.split([*self.sizes, *self.cuts])
        own = tuple(p.unsqueeze(1) for p in parts[: len(self.sizes)])
        rows = parts[len(self.sizes):]
        groups = [] if self.index is None else [(kv[self.index], self.mask)]
        groups += [(rows[i].view(p.items, p.tokens, -1), None) for i, p in zip(self.pieces, self.pools)]
        return own, groups


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

    def forward(self, summary: torch.Tensor, rows: torch.Tensor, contexts: Contexts) -> torch.Tensor:
        """Update ``summary`` ``[S, D]``, the summaries of several groups one after another, from
        the token ``rows`` ``[R, D]`` they read.

        Group ``i`` owns the next ``contexts.sizes[i]`` rows of ``summary`` and reads keys and
        values ``[S_i, M_i, 2D]`` of the rows ``contexts`` names, with a boolean mask ``[S_i, 1, 1,
        1 + M_i]`` (True = read; the first slot is the summary itself, which it always reads) or
        None for all.
        """
        s, d, h = summary.shape[0], summary.shape[-1], self.num_heads
        # The summaries and the rows through the norm and the key/value projection together (one
        # launch each, and one each in the backward); the queries are the summaries' alone.
        normed = self.norm1(torch.cat([summary, rows]))
        own, groups = contexts.split(self.kv(normed))
        queries = self.q(normed[:s]).view(s, h, 1, d // h).split(contexts.sizes)  # (a split would add a zero fill)
        attended = []
        for (context_kv, mask), q, own_kv in zip(groups, queries, own):
            kv = torch.cat([own_kv, context_kv], dim=1)  # [S_i, 1+M_i, 2D]
            k, v = split_heads(kv, q.shape[0], kv.shape[1], 2, h)  # each [S_i, h, 1+M_i, d/h]
            attended.append(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))  # [S_i, h, 1, d/h]
        attended_rows = (attended[0] if len(attended) == 1 else torch.cat(attended)).view(s, d)
        summary = summary + self.proj(attended_rows)
        return summary + self.mlp(self.norm2(summary))


class SummaryAggregator(nn.Module):
    """A learnable summary token, ``depth`` class-attention blocks and a LayerNorm.

    ``forward(rows, pools, sets)`` makes every summary of a step in one pass; ``pool(tokens)``
    summarises every token of each item and ``pool_sets(tokens, index, valid)`` the tokens that
    ``index`` picks for each position (e.g. a patch's neighbours), each on its own.

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

    def forward(self, rows: torch.Tensor, pools: Sequence[Pool] = (),
                sets: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Summaries of sets of ``rows`` ``[R, D]``, all in one pass.

        Args:
            rows: the tokens to read.
            pools: summaries of consecutive runs of rows (:class:`Pool`; e.g. each crop's patches).
            sets: ``(index, valid)`` ``[S, k]``: summary ``s`` reads ``rows[index[s, valid[s]]]``.

        Returns:
            ``[S + sum(items), D]``: the ``S`` set summaries in ``index``'s order, then each pool's.
        """
        index = mask = None
        if sets is not None:
            index, valid = sets
            mask = F.pad(valid, (1, 0), value=True).view(valid.shape[0], 1, 1, -1)  # + the summary itself
        elif not pools:
            raise ValueError("SummaryAggregator was asked for no summary")
        spans = [(p.start, p.start + p.items * p.tokens) for p in pools]
        if any(a < 0 or b > rows.shape[0] for a, b in spans) or any(b > a for (_, b), (a, _) in zip(spans, spans[1:])):
            raise ValueError(f"pools must follow each other within the {rows.shape[0]} rows: {list(pools)}")
        # The rows cut at every pool's edges, worked out once: each block then splits its keys and
        # values in one call and views each pool's piece.
        edges = sorted({0, rows.shape[0], *(e for span in spans for e in span)})
        sizes = ([] if index is None else [index.shape[0]]) + [p.items for p in pools]
        n = sum(sizes)
        contexts = Contexts(sizes, None if index is None else index + n, mask, list(pools),
                            [b - a for a, b in zip(edges, edges[1:])], [edges.index(p.start) for p in pools])
        summary = self.summary_token.expand(n, -1)
        for block in self.blocks:
            summary = block(summary, rows, contexts)
        return self.norm(summary)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, M, D]`` → ``[B, D]``."""
        b, m, d = tokens.shape
        return self(tokens.reshape(b * m, d), pools=[Pool(0, b, m)])

    def pool_sets(self, tokens: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``tokens`` ``[B, N, D]``, ``index``/``valid`` ``[B, N, k]`` → ``[B, N, D]``.

        Position ``n`` of item ``b`` gets the summary of ``tokens[b, index[b, n, valid[b, n]]]``.
        """
        b, n, k = index.shape
        flat = index + torch.arange(b, device=index.device).view(b, 1, 1) * tokens.shape[1]
        summary = self(tokens.reshape(-1, tokens.shape[-1]), sets=(flat.reshape(-1, k), valid.reshape(-1, k)))
        return summary.view(b, n, -1)
