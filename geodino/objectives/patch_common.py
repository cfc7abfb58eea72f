"""Pieces shared by the patch-level objectives: the teacher's token center, the per-token
cross-entropy, the teacher statistics they report, and the patch head they train.

The patch-level losses are DINO's loss applied token by token (SelfPatch, iBOT): the teacher's
patch outputs are centred by their own running mean and sharpened, the student's are softened,
and the center moves after the loss towards the mean teacher output of the global batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from geodino.models.head import DINOHead
from geodino.objectives.dino import all_reduce_sum, distributed
from geodino.utils import at_least_float32, flat_dot


class TokenCenter(nn.Module):
    """Running mean ``center`` ``[1, K]`` of the teacher's token outputs, for centering.

    The batch mean is taken over the tokens of all processes together (sum and count
    all-reduced in one call): the processes may hold different numbers of tokens (masked
    patches), and the result must not depend on how the batch is split.
    """

    def __init__(self, out_dim: int, momentum: float = 0.9) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def probabilities(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        return F.softmax((teacher_logits - self.center) / teacher_temp, dim=-1)  # promoted to float32

    @torch.no_grad()
    def update(self, teacher_logits: torch.Tensor) -> None:
        rows = teacher_logits.reshape(-1, self.center.shape[-1])
        if not distributed():  # one process: the count is known here, and the mean is one kernel
            if rows.shape[0]:
                self.center.lerp_(rows.mean(0, dtype=torch.float32), 1 - self.momentum)
            return
        # The row count rides along as a last column: no host-to-device copy for it.
        stats = F.pad(rows.sum(0, dtype=torch.float32), (0, 1), value=float(rows.shape[0]))
        stats, _ = all_reduce_sum(stats)
        count = stats[-1:]
        # No tokens anywhere leaves the center as it was; decided on the device, without a sync.
        self.center.lerp_(stats[:-1] / count.clamp_min(1), (count > 0) * (1 - self.momentum))


def weighted_token_cross_entropy(student_logits: torch.Tensor, teacher_probs: torch.Tensor, student_temp: float,
                                 weights: torch.Tensor) -> torch.Tensor:
    """``Σ_t weights[t] · H(teacher_probs[t], softmax(student_logits[t] / student_temp))`` for ``[T, K]``
    rows: a weighted sum of per-token cross-entropies, written as one dot product of the weighted
    targets and the log-probabilities (5 kernels forward, 2 backward, where the per-token
    cross-entropies then their weighted sum take 7 and 3)."""
    log_probs = F.log_softmax(at_least_float32(student_logits) / student_temp, dim=-1)
    return flat_dot(teacher_probs * weights.unsqueeze(-1), log_probs).neg()


class TeacherStats:
    """Entropy of the teacher's token distributions, kept as tensors until someone asks.

    The same quantities as :func:`geodino.engine.monitor.collapse_signals` for the image
    level: mean per-token entropy (→ ``ln K`` when the teacher is uniform) and the KL of the mean
    distribution from uniform (→ ``ln K`` when one prototype takes every token). Holding tensors
    avoids a device synchronisation on steps that do not log.
    """

    def __init__(self) -> None:
        self._entropy: torch.Tensor | None = None
        self._mean_entropy: torch.Tensor | None = None
        self._log_k = 0.0

    @torch.no_grad()
    def record(self, probs: torch.Tensor) -> None:
        if probs.shape[0] == 0:  # no token this step: nothing to report, rather than the last step's values
            self._entropy = self._mean_entropy = None
            return
        self._log_k = math.log(probs.shape[-1])
        # entr(p) = -p ln p (0 at p = 0): one temporary table of the tokens' size, not two
        self._entropy = torch.special.entr(probs).sum(-1).mean()
        self._mean_entropy = torch.special.entr(probs.mean(0)).sum()

    def as_dict(self) -> dict[str, float]:
        if self._entropy is None or self._mean_entropy is None:
            return {}
        return {"teacher_entropy": float(self._entropy),
                "teacher_kl_uniform": self._log_k - float(self._mean_entropy)}


def build_patch_head(embed_dim: int, out_dim: int, hidden_dim: int, bottleneck_dim: int, nlayers: int,
                     norm_last_layer: bool) -> DINOHead:
    """The DINO head architecture, for patch tokens (its own weights, usually narrower)."""
    return DINOHead(embed_dim, out_dim, hidden_dim, bottleneck_dim, nlayers, False, norm_last_layer)


def concat_rows(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """``[..., D]`` tensors flattened to rows and concatenated, with each one's row count."""
    rows = [t.reshape(-1, t.shape[-1]) for t in tensors]
    return torch.cat(rows), [r.shape[0] for r in rows]
