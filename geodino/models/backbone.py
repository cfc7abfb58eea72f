"""Backbones from timm by name, for any number of input channels and any crop size.

A :class:`Backbone` returns the image embedding (the CLS token for ViTs, the pooled feature map
for CNNs) and, where the architecture has them, the patch tokens on their grid; the patch-level
objectives need the latter.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer

from geodino.speedups import cls_only_block, supports_cls_only
from geodino.speedups.packing import Layout, SampleDrops, cls_only_rows, packed_block, supports_packing
from geodino.utils import one_line


@dataclass
class BackboneOutput:
    """What a backbone returns for one batch of crops of one size."""

    cls: torch.Tensor  # [B, D] image embedding
    patches: torch.Tensor | None  # [B, h*w, D] patch tokens (row-major), None when unavailable
    grid: tuple[int, int] | None  # (h, w) of the patch grid


class Backbone(nn.Module):
    """A thin wrapper giving timm ViTs and CNNs one interface."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.is_vit = _is_vit(model)
        self.embed_dim: int = int(getattr(model, "embed_dim", None) or model.num_features)

    @property
    def patch_size(self) -> int | None:
        if not self.is_vit:
            return None
        return int(self.model.patch_embed.patch_size[0])

    def check_input_size(self, size: int, name: str, hint: str = "") -> None:
        """Refuse an input size (``name``: the setting that gave it) that is not whole patches;
        the message ends with ``hint``, by default two sizes that are."""
        patch = self.patch_size
        if patch and size % patch:
            hint = hint or f"e.g. {max(patch, size // patch * patch)} or {(size // patch + 1) * patch}"
            raise ValueError(f"{name}={size} is not a multiple of the patch size {patch} ({hint})")

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                mask_token: torch.Tensor | None = None, cls_only: bool = False) -> BackboneOutput:
        """Embed ``x`` ``[B, C, H, W]``.

        ``mask`` (ViTs only) is a boolean ``[B, h, w]`` on the patch grid: the embeddings of the
        ``True`` patches are replaced by ``mask_token`` ``[D]`` before the position embedding is
        added, so that a masked patch keeps its position but loses its content (BEiT, iBOT).

        ``cls_only``: the caller needs the CLS embedding alone; a ViT whose last block allows it
        computes that block for the CLS token only (:mod:`geodino.speedups.cls_block`) and returns
        no patch tokens. Other backbones ignore it.
        """
        if not self.is_vit:
            if mask is not None:
                raise ValueError("patch masking needs a ViT backbone")
            try:
                fmap = self.model.forward_features(x)  # [B, C, h, w]
            except AssertionError as err:  # timm's check of a model built for one input size (Swin, ...)
                raise ValueError(f"{type(self.model).__name__} cannot take a {x.shape[-2]}x{x.shape[-1]} input "
                                 f"({one_line(err)}); multi-crop needs a backbone of any input size: "
                                 f"a CNN, or a ViT of timm's {', '.join(RESIZABLE_VIT_MODULES)} families") from None
            pooled = self.model.forward_head(fmap, pre_logits=True)
            grid = (fmap.shape[-2], fmap.shape[-1])
            return BackboneOutput(cls=pooled, patches=fmap.flatten(2).transpose(1, 2), grid=grid)
        self.check_size(x.shape[-2], x.shape[-1])
        if cls_only and mask is None and self._cls_only_supported():
            return BackboneOutput(cls=self.cls_embedding(x), patches=None, grid=None)
        # Both already passed through the final norm.
        tokens = self.model.forward_features(x) if mask is None else self._masked_tokens(x, mask, mask_token)
        return self._output(tokens, x)

    def _output(self, tokens: torch.Tensor, x: torch.Tensor) -> BackboneOutput:
        """A ViT's normed tokens ``[B, N, D]`` for the input ``x``, as a :class:`BackboneOutput`."""
        p = self.patch_size
        return BackboneOutput(cls=tokens[:, 0], patches=tokens[:, self.model.num_prefix_tokens:],
                              grid=(x.shape[-2] // p, x.shape[-1] // p))

    def check_size(self, height: int, width: int) -> None:
        """A ViT cuts its input into whole patches: other sizes are an error naming both (timm's
        own check is an assertion, a traceback to the user)."""
        p = self.patch_size
        if p and (height % p or width % p):
            raise ValueError(f"an input of {height}x{width} px is not a whole number of this model's {p}-px patches")

    def _cls_only_supported(self) -> bool:
        m = self.model
        return (self.is_vit and getattr(m, "cls_token", None) is not None
                and not getattr(m, "grad_checkpointing", False) and supports_cls_only(m.blocks[-1]))

    def cls_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The normed CLS token ``[B, D]``: timm's ``forward_features`` with the last block run for
        that token alone (ViTs that :func:`supports_cls_only`)."""
        m = self.model
        tokens = self._prepare_tokens(m.patch_embed(x))
        *blocks, last = m.blocks
        for block in blocks:
            tokens = block(tokens)
        return m.norm(cls_only_block(last, tokens))[:, 0]

    def _masked_tokens(self, x: torch.Tensor, mask: torch.Tensor, mask_token: torch.Tensor | None) -> torch.Tensor:
        # timm's own forward_features, with the masked embeddings swapped in at the output of the
        # patch embedding, i.e. before the position embedding. Done as a hook on that layer, it
        # holds for every family whatever its positions are made of (Eva's rotary ones included).
        handle = self.model.patch_embed.register_forward_hook(
            lambda _module, _inputs, emb: _swap_masked(emb, mask, mask_token))
        try:
            return self.model.forward_features(x)
        finally:
            handle.remove()

    def forward_sizes(self, crops: list[torch.Tensor], masks: list[torch.Tensor | None],
                      mask_token: torch.Tensor | None = None, cls_only: bool = False,
                      pack: bool = True) -> list[BackboneOutput]:
        """:meth:`forward` for each batch in ``crops`` (one crop size each) with its mask.

        With ``pack`` and a ViT of timm's plain blocks, the batches go through the blocks as one
        table of tokens (:mod:`geodino.speedups.packing`): fewer, larger kernels, the same numbers
        up to float rounding. Otherwise, and for a single size, one :meth:`forward` per batch.
        """
        if not (pack and len(crops) > 1 and self._packing_supported()):
            return [self.forward(x, mask=m, mask_token=mask_token if m is not None else None, cls_only=cls_only)
                    for x, m in zip(crops, masks)]
        model = self.model
        tables, groups = [], []
        for x, mask in zip(crops, masks):
            self.check_size(x.shape[-2], x.shape[-1])
            emb = model.patch_embed(x)
            tokens = self._prepare_tokens(emb if mask is None else _swap_masked(emb, mask, mask_token))
            tables.append(tokens.reshape(-1, tokens.shape[-1]))
            groups.append((tokens.shape[0], tokens.shape[1]))
        layout = Layout(tuple(groups))
        table = torch.cat(tables)
        *blocks, last = model.blocks
        cls_only = cls_only and all(m is None for m in masks) and self._cls_only_supported()
        packed = blocks if cls_only else [*blocks, last]  # a CLS-only last block has one row per sample
        drops = SampleDrops([d for b in packed for d in (b.drop_path1, b.drop_path2)], layout, table.device)
        for block in packed:
            table = packed_block(block, table, layout, drops)
        if cls_only:
            cls = model.norm(cls_only_rows(last, table, layout))
            return [BackboneOutput(cls=c, patches=None, grid=None) for c in cls.split(layout.samples)]
        table = model.norm(table)
        return [self._output(part.view(b, n, -1), x) for part, (b, n), x in zip(table.split(layout.rows), groups, crops)]

    def _packing_supported(self) -> bool:
        m = self.model
        return (self.is_vit and type(m).forward_features is VisionTransformer.forward_features
                and not getattr(m, "grad_checkpointing", False) and all(supports_packing(b) for b in m.blocks))

    def _prepare_tokens(self, emb: torch.Tensor) -> torch.Tensor:
        # The part of timm's forward_features between the patch embedding and the blocks.
        m = self.model
        return m.norm_pre(m.patch_drop(m._pos_embed(emb)))

    def last_blocks_cls(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Concatenated (normed) CLS tokens of the last ``n`` blocks, the linear-probe feature of DINO."""
        if not self.is_vit:
            return self.forward(x).cls
        self.check_size(x.shape[-2], x.shape[-1])
        outs = self.model.forward_intermediates(x, indices=n, norm=True, intermediates_only=True,
                                                return_prefix_tokens=True, output_fmt="NLC")
        return torch.cat([prefix[:, 0] for _, prefix in outs], dim=-1)


# timm modules whose ViTs take ``dynamic_img_size`` (one model for every crop size), ``img_size``,
# ``patch_size`` and ``depth``. A model's module, not its name, says which family it is: ``test_vit``
# and ``flexivit_*`` are VisionTransformers too, and ``vit_*_dinov3`` are Evas.
RESIZABLE_VIT_MODULES = ("vision_transformer", "deit", "eva")


def _registered_in(arch: str, modules: tuple[str, ...]) -> bool:
    try:
        return timm.models.is_model_in_modules(arch, modules)
    except Exception:  # an unknown name: timm.create_model says so, with the closest names
        return False


def _swap_masked(emb: torch.Tensor, mask: torch.Tensor, mask_token: torch.Tensor | None) -> torch.Tensor:
    """Patch embeddings ``emb`` (``[B, h*w, D]``, or ``[B, h, w, D]`` with dynamic_img_size) with
    those under the boolean ``[B, h, w]`` ``mask`` replaced by ``mask_token``."""
    if mask_token is None:
        raise ValueError("a mask was given without a mask token")
    grid_mask = mask if emb.ndim == 4 else mask.flatten(1)
    if grid_mask.shape != emb.shape[:-1]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match the patch grid {tuple(emb.shape[:-1])}")
    # torch.where keeps the token in the graph even when nothing is masked (DDP wants every
    # parameter used in every step).
    return torch.where(grid_mask.unsqueeze(-1), mask_token.to(emb.dtype), emb)


def _is_vit(model: nn.Module) -> bool:
    return hasattr(model, "patch_embed") and hasattr(model, "num_prefix_tokens")


def build_backbone(
    arch: str,
    in_chans: int = 3,
    img_size: int | None = None,
    patch_size: int | None = None,
    drop_path_rate: float = 0.0,
    pretrained: bool = False,
    depth: int | None = None,
) -> Backbone:
    """Create a timm model by name without a classifier.

    ViTs get ``dynamic_img_size=True`` so one model takes global and local crops; their position
    embedding is laid out for ``img_size`` (the global crop size) and interpolated for others.
    """
    kwargs: dict = dict(num_classes=0, in_chans=in_chans, pretrained=pretrained)
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    resizable = _registered_in(arch, RESIZABLE_VIT_MODULES)
    if resizable:
        kwargs["dynamic_img_size"] = True
        if img_size is not None:
            kwargs["img_size"] = img_size
        if patch_size is not None:
            kwargs["patch_size"] = patch_size
        if depth:
            kwargs["depth"] = depth
    try:
        model = timm.create_model(arch, **kwargs)
    except RuntimeError as err:
        raise ValueError(f"cannot build backbone {arch!r}: {err} (closest timm names: {similar_archs(arch)})") from err
    if not resizable and _is_vit(model):  # its position table is fixed: it cannot take global and local crops
        raise ValueError(f"model.arch={arch} is a ViT that timm cannot resize to each crop size; use one of timm's "
                         f"{', '.join(RESIZABLE_VIT_MODULES)} models (e.g. vit_small_patch16_224, eva02_small_patch14_224)")
    for key, value in (("depth", depth), ("patch_size", patch_size)):
        if value and not resizable:
            raise ValueError(f"model.{key}={value} cannot be applied to {arch!r}: it sets the blocks and patches of "
                             f"a ViT of timm's {', '.join(RESIZABLE_VIT_MODULES)} families; leave it at 0 for other models")
    remove_zero_dropout(model)
    return Backbone(model)


class NoDropout(nn.Identity):
    """A dropout of rate 0: returns its input without dispatching an op. Keeps ``p`` because timm's
    fused attention reads ``attn_drop.p``."""

    p = 0.0


def remove_zero_dropout(model: nn.Module) -> int:
    """Replace the ``nn.Dropout(0)`` layers timm puts in every block (a dozen per ViT block pair,
    each still one dispatched op a forward, a kernel launch on a GPU) with :class:`NoDropout`;
    returns how many. Dropouts with a rate stay."""
    swapped = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and child.p == 0.0:
                setattr(parent, name, NoDropout())
                swapped += 1
    return swapped


def similar_archs(arch: str, n: int = 5) -> list[str]:
    """timm model names closest to ``arch``: those of its family (the text before the first
    underscore) ranked by similarity, so ``vit_tiny_patch16`` suggests ``vit_tiny_patch16_224``
    rather than whatever sorts first."""
    import difflib

    family = timm.list_models(f"{arch.split('_')[0]}*") or timm.list_models()
    return difflib.get_close_matches(arch, family, n=n, cutoff=0.0)
