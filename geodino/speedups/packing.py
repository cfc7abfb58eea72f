"""Crops of several sizes through a ViT's blocks as one table of tokens.

Multi-crop gives the student two crop sizes (and a teacher that sees every crop, two as well), so
a plain forward runs the backbone once per size. Yet all of a ViT block but the attention treats
each token on its own: the layer norms, the qkv, projection and MLP linears, layer scale, the
residual adds. Run once per size, each of those is a kernel launch per size, a backward per size,
and one more gradient to add up for every parameter. Here the tokens of every size sit in one
``[rows, D]`` table: the per-token layers run once over all of it, and only the attention runs
per size (its context is one crop). The numbers are those of one pass per size up to float
rounding; stochastic depth still keeps or drops whole samples.

With stochastic depth drawn for all blocks at once (:class:`SampleDrops`), it takes a ViT-S/16
DINO step (2 global and 10 local crops) from 1386 to 810 launching ops, the kernel launches a
GPU's host queues (``geodino bench host``; BENCHMARKS.md has the figures). It covers
timm's plain ``Block`` / ``Attention`` (:func:`supports_packing`); other blocks run one pass per
size. ``GEODINO_PACKED=0`` (or ``GEODINO_SPEEDUPS=off``) always does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Attention, DropPath
from timm.models.vision_transformer import Block

from geodino.speedups import onednn_linear
from geodino.speedups.switch import feature_on
from geodino.utils import split_heads


@dataclass(frozen=True)
class Layout:
    """How a token table is made: per crop size, in table order, ``(samples, tokens per sample)``;
    each sample's tokens are consecutive rows, its CLS token first."""

    groups: tuple[tuple[int, int], ...]

    @property
    def samples(self) -> list[int]:
        return [b for b, _ in self.groups]

    @property
    def rows(self) -> list[int]:
        return [b * n for b, n in self.groups]

    def sample_of_row(self, device: torch.device) -> torch.Tensor:
        """``[rows]``: the index of each row's sample (built once per layout and device)."""
        return _sample_of_row(self.groups, device)


@functools.lru_cache(maxsize=32)
def _sample_of_row(groups: tuple[tuple[int, int], ...], device: torch.device) -> torch.Tensor:
    counts = torch.tensor([n for b, n in groups for _ in range(b)])
    return torch.repeat_interleave(torch.arange(len(counts)), counts).to(device)


def plain_block(block: nn.Module) -> bool:
    """A timm ViT ``Block`` with timm's plain ``Attention`` (no gating): the block this module's
    functions (and :mod:`geodino.speedups.cls_block`) compute."""
    return type(block) is Block and type(block.attn) is Attention and getattr(block.attn, "gate", None) is None


def supports_packing(block: nn.Module) -> bool:
    """True for a :func:`plain_block` with plain stochastic depth, unless ``GEODINO_PACKED=0`` or
    ``GEODINO_SPEEDUPS=off``."""
    return (feature_on("GEODINO_PACKED") and plain_block(block)
            and all(type(d) in (nn.Identity, DropPath) for d in (block.drop_path1, block.drop_path2)))


class SampleDrops:
    """Stochastic depth for a forward over a token table: for each of ``layers`` (timm ``DropPath``
    or identity) one keep-or-drop factor per sample, spread to its rows, as timm's layer gives one
    per sample of a ``[B, N, D]`` batch (0, or ``1 / keep`` with ``scale_by_keep``).

    All layers are drawn at once, in four kernels (five under autocast), where each layer drawing
    for itself costs four launches (twelve per block for two crop sizes through timm's own layers).
    """

    def __init__(self, layers: list[nn.Module], layout: Layout, device: torch.device) -> None:
        active = [d for d in layers if isinstance(d, DropPath) and d.training and d.drop_prob > 0.0]
        self._at = {id(d): i for i, d in enumerate(active)}
        self._rows: dict[torch.dtype, torch.Tensor] = {}
        if not active:
            return
        table = _keep_and_scale(tuple((float(d.drop_prob), bool(d.scale_by_keep)) for d in active), device)
        kept = (torch.rand(len(active), sum(layout.samples), device=device) < table[0, :, None]) * table[1, :, None]
        self._rows[kept.dtype] = kept[:, layout.sample_of_row(device)]  # [layers, rows]

    def __call__(self, layer: nn.Module, y: torch.Tensor) -> torch.Tensor:
        """``y`` ``[rows, D]`` after ``layer``'s stochastic depth (``y`` itself when it drops nothing)."""
        factor = self._factor(layer, y.dtype)
        return y if factor is None else y * factor

    def add(self, x: torch.Tensor, layer: nn.Module, y: torch.Tensor) -> torch.Tensor:
        """``x + self(layer, y)``, the residual add after the layer, in one kernel each way
        (:class:`_AddScaled`) where autograd's multiply then add take three."""
        factor = self._factor(layer, y.dtype)
        return x + y if factor is None else _AddScaled.apply(x, y, factor)

    def _factor(self, layer: nn.Module, dtype: torch.dtype) -> torch.Tensor | None:
        """``[rows, 1]``: each row's factor for ``layer`` (None: it drops nothing)."""
        at = self._at.get(id(layer))
        if at is None:
            return None
        if dtype not in self._rows:  # the dtype timm's layer would draw in (autocast's, say): one cast
            self._rows[dtype] = next(iter(self._rows.values())).to(dtype)
        return self._rows[dtype][at, :, None]


class _AddScaled(torch.autograd.Function):
    """``x + y * factor`` for a ``factor`` without gradient: ``addcmul`` forward, one multiply backward
    (autograd's ``addcmul`` also multiplies the factor by its scalar weight in the backward)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(factor)
        # addcmul's own type promotion (fp32 residual, bf16 branch: fp32, as x + y * factor gives);
        # CUDA's autocast would first cast y and factor to fp32, two more kernels.
        with torch.autocast(x.device.type, enabled=False):
            return torch.addcmul(x, y, factor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (factor,) = ctx.saved_tensors
        return grad, grad * factor, None


@functools.lru_cache(maxsize=32)
def _keep_and_scale(layers: tuple[tuple[float, bool], ...], device: torch.device) -> torch.Tensor:
    """``[2, layers]`` on ``device``: each layer's probability to keep a sample, and the factor
    of a kept one (copied to the device once per set of layers)."""
    keep = [1.0 - p for p, _ in layers]
    scale = [1.0 / k if k > 0.0 and by_keep else 1.0 for k, (_, by_keep) in zip(keep, layers)]
    return torch.tensor([keep, scale]).to(device)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _attend(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """timm's attention core on ``[B, heads, N, head_dim]`` queries, keys and values."""
    q, k = attn.q_norm(q), attn.k_norm(k)
    dropout = attn.attn_drop.p if attn.training else 0.0
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=attn.scale)


def packed_block(block: Block, x: torch.Tensor, layout: Layout, drops: SampleDrops) -> torch.Tensor:
    """``block`` over the token table ``x`` ``[rows, D]``: what each size's tokens would get from
    ``block(tokens)``, in the same rows; ``drops`` holds the stochastic depth of its layers."""
    attn = block.attn
    heads, width = attn.num_heads, attn.num_heads * attn.head_dim  # (timm < 1.0.23 has no attn_dim)
    qkv = attn.qkv(block.norm1(x))
    outs = []
    for (b, n), part in zip(layout.groups, qkv.split(layout.rows)):
        q, k, v = split_heads(part, b, n, 3, heads)
        outs.append(_attend(attn, q, k, v).transpose(1, 2).reshape(b * n, width))
    out = attn.proj_drop(attn.proj(attn.norm(_cat(outs))))
    x = drops.add(x, block.drop_path1, block.ls1(out))
    return drops.add(x, block.drop_path2, block.ls2(block.mlp(block.norm2(x))))


def cls_only_rows(block: Block, x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """``[samples, D]``: the CLS rows of ``packed_block(block, x, layout)``, computed without the
    other rows' queries, attention output, projection and MLP, which feed nothing (see
    :mod:`geodino.speedups.cls_block`). The other rows still give keys and values."""
    attn = block.attn
    heads, head_dim = attn.num_heads, attn.head_dim
    width = heads * head_dim  # (timm < 1.0.23 has no attn_dim)
    h = block.norm1(x)

    def firsts(table: torch.Tensor) -> torch.Tensor:  # each sample's first row (a view per size)
        return _cat([part.view(b, n, -1)[:, 0] for part, (b, n) in zip(table.split(layout.rows), layout.groups)])

    weight, bias = attn.qkv.weight, attn.qkv.bias
    project = onednn_linear.linear if isinstance(attn.qkv, onednn_linear.OneDNNLinear) else F.linear
    # timm's qkv projection stacks the query, key and value weights in that order. A split, not two
    # slices: its backward is one concatenation, where each slice's fills a zero buffer the size of
    # the whole weight and the two are then added.
    w_q, w_kv = weight.split([width, weight.shape[0] - width])
    b_q, b_kv = (None, None) if bias is None else bias.split([width, bias.shape[0] - width])
    q = project(firsts(h), w_q, b_q)
    kv = project(h, w_kv, b_kv)
    outs = []
    for (b, n), q_part, kv_part in zip(layout.groups, q.split(layout.samples), kv.split(layout.rows)):
        k, v = split_heads(kv_part, b, n, 2, heads)
        out = _attend(attn, q_part.reshape(b, 1, heads, head_dim).transpose(1, 2), k, v)
        outs.append(out.reshape(b, width))  # [b, heads, 1, head_dim]: heads already in order
    out = attn.proj_drop(attn.proj(attn.norm(_cat(outs))))
    cls = firsts(x) + block.drop_path1(block.ls1(out))  # one row per sample: timm's per-sample draw
    return cls + block.drop_path2(block.ls2(block.mlp(block.norm2(cls))))
