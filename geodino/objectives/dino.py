"""The image-level DINO objective: cross-entropy between a centred, sharpened teacher and the student.

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from geodino.models.multicrop import MultiCropOutput
from geodino.objectives.base import Objective
from geodino.utils import at_least_float32, flat_dot


def distributed() -> bool:
    """Whether this process is one of several (a process group of more than one is up)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum ``t`` over all processes (in place); returns it with the world size."""
    if distributed():
        dist.all_reduce(t)
        return t, dist.get_world_size()
    return t, 1


def stacked_views(views: Any) -> torch.Tensor:
    """The per-view logits of an objective's call as one ``[views, B, K]`` tensor. Objectives share
    one call shape: a :class:`MultiCropOutput` (whose ``logits`` are already that tensor: no copy),
    such a tensor, or a list of ``[B, K]`` tensors (stacked)."""
    if isinstance(views, MultiCropOutput):
        views = views.logits
    if isinstance(views, torch.Tensor):
        if views.ndim != 3:
            raise ValueError(f"DINOLoss needs views [views, B, K], got a tensor of shape {tuple(views.shape)}")
        return views
    views = list(views)
    if len({tuple(v.shape) for v in views}) > 1:
        raise ValueError(f"DINOLoss needs views of one shape [B, K], got {[tuple(v.shape) for v in views]}")
    return torch.stack(views)


class DINOLoss(Objective):
    """DINO loss with teacher centering and sharpening.

    The teacher's views (the two global crops) are centred by ``center`` and sharpened by the
    teacher temperature; the student's views (the same two global crops first, in the same
    order, then the local crops) are softened by ``student_temp``. Every teacher view is paired
    with every student view except itself; each pair's cross-entropy is averaged over the batch
    and the pairs are averaged. After the loss the center moves towards the mean teacher output
    of the global batch (summed over all processes).

    Attributes:
        center: ``[1, out_dim]`` running mean of teacher logits, updated with ``center_momentum``.

    Example:
        >>> loss_fn = DINOLoss(out_dim=4)
        >>> student = [torch.randn(2, 4) for _ in range(4)]   # 2 global + 2 local views
        >>> teacher = [torch.randn(2, 4) for _ in range(2)]
        >>> loss = loss_fn(student, teacher, teacher_temp=0.04)
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probabilities(self, teacher_logits: Any, teacher_temp: float) -> list[torch.Tensor]:
        return list(self._probabilities(stacked_views(teacher_logits), teacher_temp).unbind(0))

    def _probabilities(self, teacher: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        # The center is float32, so a half-precision teacher is promoted by the subtraction.
        return F.softmax((teacher - self.center) / teacher_temp, dim=-1)

    def forward(self, student_logits: Any, teacher_logits: Any, teacher_temp: float) -> torch.Tensor:
        # All views in one [views, B, K] tensor: a handful of ops whatever the number of crops.
        student, teacher_rows = stacked_views(student_logits), stacked_views(teacher_logits)
        if student.shape[1:] != teacher_rows.shape[1:]:
            raise ValueError(f"DINOLoss needs views of one shape [B, K], got student views of "
                             f"{tuple(student.shape[1:])} and teacher views of {tuple(teacher_rows.shape[1:])}")
        if teacher_rows.requires_grad:  # (the engine's teacher runs without a graph: no op then)
            teacher_rows = teacher_rows.detach()
        log_probs = self.student_log_probs(student)  # first: the targets' temporaries then outlive no input
        loss = flat_dot(self.targets(teacher_rows, len(student), teacher_temp), log_probs)
        self.update_center(teacher_rows)
        return loss

    def student_log_probs(self, student: torch.Tensor) -> torch.Tensor:
        """The student's softened log-distributions, float32 at least, same shape."""
        return F.log_softmax(at_least_float32(student) / self.student_temp, dim=-1)

    @torch.no_grad()
    def targets(self, teacher_rows: torch.Tensor, n_student: int, teacher_temp: float) -> torch.Tensor:
        """``[n_student, B, K]``: the loss is ``Σ targets · log q`` over the student's
        log-distributions ``log q`` (:meth:`student_log_probs`), one dot product.

        The loss pairs teacher view ``i`` with every student view but view ``i`` (the same crop),
        so student view ``v`` is scored against the sum of the teacher's distributions but its own:
        ``P - p_v`` (``P`` the sum over teacher views; all of ``P`` for views the teacher does
        not see), times ``-1 / (pairs B)``. Summing on the teacher's side, which has no graph,
        leaves the backward a dot product and a log-softmax (4 launches, where pairing the
        student's views took 8); the targets are also exacter, being probabilities rather than
        sums of large negative logarithms.
        """
        _check_views(n_student, len(teacher_rows))
        probs = self._probabilities(teacher_rows, teacher_temp)
        n_teacher, batch = probs.shape[:2]
        coef = 1.0 / (n_teacher * (n_student - 1) * batch)
        total = probs.sum(0, keepdim=True).mul_(-coef)
        paired = torch.add(total, probs, alpha=coef)  # -coef (P - p_v)
        if n_student == n_teacher:
            return paired
        return torch.cat([paired, total.expand(n_student - n_teacher, -1, -1)])

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """Move the center towards the mean of ``teacher_logits`` ``[..., K]`` over every process."""
        rows = teacher_logits.reshape(-1, teacher_logits.shape[-1])
        if not distributed():  # one process: its mean, in one kernel
            self.center.lerp_(rows.mean(dim=0, keepdim=True, dtype=torch.float32), 1 - self.center_momentum)
            return
        batch_sum, world = all_reduce_sum(rows.sum(dim=0, keepdim=True, dtype=torch.float32))
        self.center.lerp_(batch_sum / (rows.shape[0] * world), 1 - self.center_momentum)


def _check_views(n_student: int, n_teacher: int) -> None:
    """DINO pairs each teacher view with every other student view: the teacher's views are the
    first of the student's, so 1 <= teacher <= student and at least 2 student views."""
    if n_student < 2 or not 1 <= n_teacher <= n_student:
        raise ValueError(f"DINOLoss needs >= 2 student views and 1..n teacher views, got "
                         f"{n_student} student and {n_teacher} teacher views")
