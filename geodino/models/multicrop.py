"""Runs a backbone and heads over a list of crops, batching crops of the same size together."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from geodino.models.backbone import Backbone, BackboneOutput
from geodino.utils import to_device_async

ROLES = ("student", "teacher")


class ExtraHeads(nn.Module):
    """Trainable parts an objective adds to both networks (``MultiCropWrapper.extra_heads[name]``),
    called as ``heads(features, role=..., masks=..., n_views=...)`` after the backbone (the first
    ``n_views`` crops are the network's image-level views, the rest its ``extra_views``), with named
    hooks the wrapper asks every extra head."""

    #: The teacher also runs on the local crops (same-view patch targets), not only the globals.
    teacher_sees_all_crops: bool = False

    def student_mask_token(self) -> torch.Tensor | None:
        """The embedding that replaces masked patches in the student (None: nothing is masked)."""
        return None


@dataclass
class MultiCropOutput:
    # [views, B, K]: the image head's output, one [B, K] slice per view in view order (it indexes,
    # iterates and has a len like a list of views; one tensor, so a loss needs no stack of them).
    logits: torch.Tensor
    features: list[BackboneOutput]  # backbone output per crop (CLS and patch tokens)
    extra: dict[str, Any] = field(default_factory=dict)  # each extra head's output, by name


class PatchMasks(list):
    """The student's per-crop patch masks as the networks take them (a list: a boolean ``[n, h, w]``
    tensor or None per crop), with ``rows``: where the masked patches are among the patch tokens of
    the crops that have a mask (crop after crop, image-major, patches row-major), worked out on
    the host where the masks were drawn and copied ahead with them.

    Gathering the masked tokens by ``rows`` needs nothing back from the device; indexing them with
    the boolean masks does (the device must say how many are true: a host-device synchronisation
    in the forward and again in the backward, issue 14). The engine also passes ``rows`` to the
    networks as a tensor of its own (``mask_rows``): a data-parallel wrapper may rebuild the list
    as a plain one on its way in.
    """

    def __init__(self, masks: list[torch.Tensor | None], rows: torch.Tensor | None = None) -> None:
        super().__init__(masks)
        self.rows = rows

    @classmethod
    def to_device(cls, masks: list[torch.Tensor | None], device: torch.device) -> PatchMasks:
        """Host masks → masks and ``rows`` on ``device``, copied without waiting (pinned on a GPU)."""
        present = [m.reshape(m.shape[0], -1).cpu().numpy() for m in masks if m is not None]  # (host masks: no copy)
        rows = torch.from_numpy(np.flatnonzero(np.concatenate(present))) if present else None
        return cls([None if m is None else to_device_async(m, device) for m in masks],
                   None if rows is None else to_device_async(rows, device))


class MultiCropWrapper(nn.Module):
    """Backbone + image head (+ extra heads) over multi-crop views.

    Consecutive views of the same spatial size go through the backbone in one call (as in the
    reference DINO); the image head runs once on all CLS embeddings. Without extra heads nothing
    reads the patch tokens, so the backbone is asked for the CLS embedding alone (``cls_only``),
    which saves most of a ViT's last block; ``features[i].patches`` is then None.

    Extra heads (the trainable parts of patch-level objectives) are registered by name in
    ``extra_heads``, so that they are trained, checkpointed and averaged into the teacher with the
    rest; the forward pass runs them (inside ``forward``, so that DDP sees their parameters) as
    ``head(features, role=..., masks=..., n_views=len(views))`` and returns their outputs in
    ``extra[name]``. What an extra head may declare:

    - ``teacher_sees_all_crops = True``: the teacher also runs its backbone on ``extra_views``
      (the student's crops beyond the teacher's own, i.e. the local crops), for those heads only;
    - a ``mask_token`` parameter: the student replaces the patch embeddings that ``masks`` select
      by it.

    Args:
        backbone: a :class:`Backbone`.
        head: the image-level head (on the CLS embedding).
        role: ``"student"`` or ``"teacher"``; the extra heads compute different things for each.
    """

    def __init__(self, backbone: Backbone, head: nn.Module, role: str = "student") -> None:
        super().__init__()
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.backbone = backbone
        self.head = head
        self.role = role
        self.extra_heads = nn.ModuleDict()
        # The reference-style baseline sets both to False: it computes the patch tokens nobody reads,
        # and runs the backbone once per crop size (geodino.speedups.cls_block, .packing).
        self.skip_unread_patch_tokens = True
        self.pack_crop_sizes = True

    def forward(
        self,
        views: list[torch.Tensor],
        extra_views: list[torch.Tensor] | None = None,
        masks: list[torch.Tensor | None] | None = None,
        mask_rows: torch.Tensor | None = None,
    ) -> MultiCropOutput:
        """``views``: the crops of this network's image-level loss. ``extra_views``: crops only
        extra heads asking for them see (teacher). ``masks``: per crop, in the student's crop order,
        a boolean ``[B, h, w]`` patch mask or None; the student masks its input with it, both
        networks pass it to the extra heads."""
        if mask_rows is not None:  # the extra heads receive them together (PatchMasks)
            masks = PatchMasks(list(masks or []), mask_rows)
        crops = list(views)
        if self.role == "teacher" and extra_views and self._teacher_sees_all_crops():
            crops += list(extra_views)
        input_masks: list[torch.Tensor | None] = [None] * len(crops)
        if self.role == "student" and masks is not None:
            input_masks = [*masks, *input_masks][: len(crops)]
        features, cls_by_size = self._features(crops, input_masks)
        batch = {v.shape[0] for v in views}
        if len(batch) != 1:
            raise ValueError(f"the views must hold the same number of images, got {[v.shape[0] for v in views]}")
        logits = self.head(self._views_cls(features, cls_by_size, len(views))).unflatten(0, (len(views), batch.pop()))
        extra = {name: head(features, role=self.role, masks=masks, n_views=len(views))
                 for name, head in self.extra_heads.items()}
        return MultiCropOutput(logits=logits, features=features, extra=extra)

    @staticmethod
    def _views_cls(features: list[BackboneOutput], cls_by_size: list[tuple[int, torch.Tensor]], n_views: int
                   ) -> torch.Tensor:
        """The CLS embeddings of the first ``n_views`` crops, ``[images, D]``: whole crop-size batches
        when the views end where one ends (they do: the global crops, or every crop), which
        spares a copy per crop and its gradient's concatenation per size in the backward."""
        parts, crops = [], 0
        for count, cls in cls_by_size:
            if crops == n_views:
                break
            parts.append(cls)
            crops += count
        if crops != n_views:
            return torch.cat([f.cls for f in features[:n_views]])
        return join_rows(parts)

    def _features(self, crops: list[torch.Tensor], masks: list[torch.Tensor | None]
                  ) -> tuple[list[BackboneOutput], list[tuple[int, torch.Tensor]]]:
        """Each crop's backbone output, and per crop size the number of crops and their CLS rows."""
        token = self._mask_token()
        cls_only = self.skip_unread_patch_tokens and not self.extra_heads
        batches: list[torch.Tensor] = []  # one per crop size, in crop order
        batch_masks: list[torch.Tensor | None] = []
        sizes: list[list[int]] = []  # the crops of each
        start = 0
        for _, same_size in groupby(crops, key=lambda v: tuple(v.shape[-2:])):
            same_size = list(same_size)
            sizes.append([v.shape[0] for v in same_size])
            group_masks = masks[start : start + len(same_size)]
            start += len(same_size)
            mask = None
            if any(m is not None for m in group_masks):
                if token is None:
                    raise ValueError("masks were given but no extra head defines a mask token")
                grid = self._grid(same_size[0])
                mask = torch.cat([m if m is not None else torch.zeros(s, *grid, dtype=torch.bool, device=v.device)
                                  for m, s, v in zip(group_masks, sizes[-1], same_size)]).to(same_size[0].device)
            batches.append(join_rows(same_size))
            batch_masks.append(mask)
        outs = self.backbone.forward_sizes(batches, batch_masks, mask_token=token, cls_only=cls_only,
                                           pack=self.pack_crop_sizes)
        features: list[BackboneOutput] = []
        for out, group_sizes in zip(outs, sizes):
            patches = out.patches.split(group_sizes) if out.patches is not None else [None] * len(group_sizes)
            for cls, tokens in zip(out.cls.split(group_sizes), patches):
                features.append(BackboneOutput(cls=cls, patches=tokens, grid=out.grid))
        return features, [(len(group_sizes), out.cls) for out, group_sizes in zip(outs, sizes)]

    def _grid(self, crop: torch.Tensor) -> tuple[int, int]:
        p = self.backbone.patch_size or 1
        return crop.shape[-2] // p, crop.shape[-1] // p

    def _teacher_sees_all_crops(self) -> bool:
        return any(h.teacher_sees_all_crops for h in self.extra_heads.values())

    def _mask_token(self) -> torch.Tensor | None:
        tokens = [t for t in (h.student_mask_token() for h in self.extra_heads.values()) if t is not None]
        if len(tokens) > 1:
            raise ValueError("more than one extra head defines a mask token")
        return tokens[0] if tokens else None


def join_rows(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(parts)`` without the copy when the parts already lie back to back in one buffer:
    the augmentation's crops of one size (slices of one tensor) and the packed backbone's CLS rows
    (split per crop size). A copy and a kernel launch spared, and for rows in a graph the
    concatenation of their gradients in the backward too.

    Rows outside any graph come back as a view of their buffer. Rows in a graph must be all of the
    tensor they were split from, which is returned itself, so that gradients reach it (it must not
    have been written in place since the split: views share its version counter, so that cannot be
    checked here; the wrapper's CLS rows are not).
    """
    first = parts[0]
    if len(parts) == 1:
        return first
    adjacent = all(
        p.is_contiguous() and p.shape[1:] == first.shape[1:] and p.dtype == first.dtype and not (p.is_conj() or p.is_neg())
        and p.untyped_storage().data_ptr() == first.untyped_storage().data_ptr() for p in parts
    ) and all(b.data_ptr() == a.data_ptr() + a.numel() * a.element_size() for a, b in zip(parts, parts[1:]))
    if not adjacent:
        return torch.cat(parts)
    shape = (sum(p.shape[0] for p in parts), *first.shape[1:])
    if not any(p.requires_grad for p in parts):
        return first.as_strided(shape, torch.empty(shape, device="meta").stride(), first.storage_offset())
    base = first._base  # the tensor a view was taken from (None for a tensor of its own)
    whole = (torch.is_grad_enabled()  # (under no_grad a cat would not require grad)
             and base is not None and tuple(base.shape) == shape and base.is_contiguous()
             and base.data_ptr() == first.data_ptr() and not (base.is_conj() or base.is_neg())
             and all(p._base is base and p.requires_grad == base.requires_grad for p in parts))
    return base if whole else torch.cat(parts)
