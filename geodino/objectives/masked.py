"""Masked-patch prediction (iBOT, as DINOv2 uses it): the student, with some patches of its
global crops replaced by a mask token, predicts the teacher's outputs for those patches on the
same crop unmasked.

Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022; Oquab et al.,
"DINOv2", TMLR 2024 (code: facebookresearch/ibot, facebookresearch/dinov2).

- Masks (:mod:`geodino.objectives.masking`): each global crop of the student is masked with
  ``probability``, a ratio uniform in ``ratio`` of its patches, in blocks. The engine asks for
  them through :meth:`MaskedPatchLoss.student_masks` from numbers keyed by the step.
- The student's backbone replaces the masked patch embeddings by a learnable mask token
  (held by :class:`MaskedPatchHeads`) before the position embedding.
- Only the masked positions go through the patch heads, in both networks (as DINOv2 does):
  the teacher's head on its unmasked crop, the student's on its masked one.
- Loss: DINO's cross-entropy per masked token, with its own center; each image's tokens are
  averaged, and the sum over images is divided by the number of global crops (masked or not),
  DINOv2's normalisation.
- The image-level DINO loss sees the student's masked crops too, as in DINOv2.

DINOv2 differences: its center is the mean of per-process means; here it is the mean over the
global batch's masked tokens (count-weighted), so one process and several agree exactly. DINOv2
draws exactly ``probability × crops`` masked crops with stratified ratios; here each crop draws
independently, as the objective's settings say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from geodino.config import ConfigError
from geodino.models.backbone import BackboneOutput
from geodino.models.multicrop import ExtraHeads, PatchMasks
from geodino.objectives.masking import sample_block_masks
from geodino.objectives.base import (
    Objective,
    PatchObjective,
    head_settings,
    loss_settings,
    register_patch_objective,
)
from geodino.objectives.patch_common import (
    TeacherStats,
    TokenCenter,
    build_patch_head,
    concat_rows,
    weighted_token_cross_entropy,
)
from geodino.rng import RowRandom

if TYPE_CHECKING:
    from geodino.config.schema import Config


@dataclass
class MaskedOutput:
    logits: torch.Tensor  # [M, K] at the masked positions of all masked crops (crop-, then image-major)
    masks: torch.Tensor  # [crops, h*w] boolean: the masks of those crops, one row per image and crop
    rows: torch.Tensor | None = None  # [M]: the masked positions in masks.reshape(-1) (PatchMasks.rows)


class MaskedPatchHeads(ExtraHeads):
    """The trainable parts of the masked-patch objective: the mask token and the patch head."""

    teacher_sees_all_crops = False  # only the global crops are masked

    def __init__(self, embed_dim: int, out_dim: int = 4096, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 nlayers: int = 3, norm_last_layer: bool = True) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(embed_dim))  # DINOv2 starts it at zero
        self.head = build_patch_head(embed_dim, out_dim, hidden_dim, bottleneck_dim, nlayers, norm_last_layer)

    def student_mask_token(self) -> torch.Tensor:
        return self.mask_token

    def forward(self, features: list[BackboneOutput], role: str, masks: list[torch.Tensor | None] | None = None,
                n_views: int | None = None) -> MaskedOutput | None:
        pairs = [(f, m.flatten(1)) for f, m in zip(features, masks or []) if m is not None]
        if not pairs:  # a forward pass outside training (no masks): nothing to predict
            return None
        positions = masks.rows if isinstance(masks, PatchMasks) else None
        if positions is None:  # boolean indexing: the device must tell the host how many rows
            rows, _ = concat_rows([f.patches[m] for f, m in pairs])
        else:  # the positions the host worked out when it drew the masks: no read-back
            patches = torch.cat([f.patches for f, _ in pairs])
            rows = patches.reshape(-1, patches.shape[-1]).index_select(0, positions)
        # The head runs even on zero rows, so that its parameters take part in every step (DDP).
        return MaskedOutput(logits=self.head(rows), masks=torch.cat([m for _, m in pairs]), rows=positions)


class MaskedPatchLoss(Objective):
    """``loss(student_out, teacher_out, teacher_temp)`` on ``extra[key]`` (:class:`MaskedOutput`).

    Args:
        out_dim: prototypes of the patch head.
        student_temp: softening of the student's outputs (0.1).
        center_momentum: of the patch center.
        teacher_temp: sharpening of the teacher's outputs; 0 follows the image-level schedule.
        probability, ratio: which global crops are masked and how much of them.
        key: the name of the heads in ``extra_heads``.
    """

    def __init__(self, out_dim: int = 4096, student_temp: float = 0.1, center_momentum: float = 0.9,
                 teacher_temp: float = 0.0, probability: float = 0.5, ratio: tuple[float, float] = (0.1, 0.5),
                 key: str = "masked") -> None:
        super().__init__()
        self.key, self.student_temp, self.teacher_temp = key, student_temp, teacher_temp
        self.probability, self.ratio = probability, tuple(ratio)
        self.center = TokenCenter(out_dim, center_momentum)
        self.record_signals = True  # the engine turns it off on steps that do not log
        self._stats = TeacherStats()
        self._masked_fraction: torch.Tensor | None = None

    def wants_student_masks(self) -> bool:
        return True

    def student_masks(self, grids: list[tuple[int, int]], n_global: int, rng: RowRandom) -> list[torch.Tensor | None]:
        """Masks ``[n, h, w]`` for the student's global crops (the first ``n_global`` views), None
        for the others, for ``rng``'s rows of the global batch."""
        if len(set(grids[:n_global])) != 1:
            raise ValueError(f"the global crops have different grids: {grids[:n_global]}")
        masks = sample_block_masks(n_global, grids[0], rng, self.probability, self.ratio)
        return [*masks, *([None] * (len(grids) - n_global))]

    def forward(self, student_out: Any, teacher_out: Any, teacher_temp: float) -> torch.Tensor:
        student: MaskedOutput | None = student_out.extra[self.key]
        teacher: MaskedOutput | None = teacher_out.extra[self.key]
        if student is None or teacher is None:
            raise ValueError("the masked-patch objective got no masks: the engine must pass its student_masks() "
                             "to both networks")
        teacher_rows = teacher.logits.detach()
        probs = self.center.probabilities(teacher_rows, self.teacher_temp or teacher_temp)
        if self.record_signals:  # before the loss's tables exist: its temporaries add to no peak
            self._stats.record(probs)
        masks = student.masks  # [crops, N], rows in the same order as the tokens
        per_image = masks.sum(1, keepdim=True).clamp_min(1)
        # Each crop's mean over its masked tokens, averaged over crops: one weighted sum.
        per_row = 1.0 / (per_image * masks.shape[0])
        if student.rows is None:
            weights = per_row.expand_as(masks)[masks]
        else:  # each masked token's image from its position: no read-back
            weights = per_row.view(-1).index_select(0, student.rows.div(masks.shape[1], rounding_mode="floor"))
        loss = weighted_token_cross_entropy(student.logits, probs, self.student_temp, weights)
        if self.record_signals:
            self._masked_fraction = masks.float().mean().detach()
        self.center.update(teacher_rows)
        return loss

    def signals(self) -> dict[str, float]:
        """The patch teacher's entropy and the fraction of global-crop patches masked (this process)."""
        out = self._stats.as_dict()
        if self._masked_fraction is not None:
            out["patch_fraction"] = float(self._masked_fraction)
        return out


def _heads(cfg: Config, embed_dim: int, is_vit: bool) -> MaskedPatchHeads:
    if not is_vit:
        raise ConfigError(f"objective.patch=masked needs a ViT backbone (mask token), not {cfg.model.arch!r}")
    return MaskedPatchHeads(embed_dim, **head_settings(cfg))


register_patch_objective("masked", PatchObjective(
    heads=_heads, loss=lambda cfg, key: MaskedPatchLoss(**loss_settings(cfg), probability=cfg.objective.masked.probability,
                                                        ratio=tuple(cfg.objective.masked.ratio), key=key)))
