"""SelfPatch: each patch learns to predict a summary of its most similar spatial neighbours.

Yun et al., "Patch-level Representation Learning for Self-supervised Vision Transformers",
CVPR 2022 (code: alinlab/SelfPatch). See DESIGN §3.

For every patch of every crop (global and local), the teacher takes the patches of the 3×3
window around it that lie on the crop's grid, keeps the ``k`` most cosine-similar ones
(:mod:`geodino.objectives.neighbours`), and summarises them with an aggregation module (two
class-attention blocks with their own summary token, then a LayerNorm:
:class:`geodino.models.class_attention.SummaryAggregator`). The student's own patch token (after
the backbone's final LayerNorm) must predict, through the patch head, the teacher's summary
through the teacher's patch head: DINO's cross-entropy per token, with its own center, same crop
only. The loss is each crop's mean over patches and images, averaged over crops.

**Who trains the aggregation module.** The teacher is an exponential average of the student,
so a module that only the teacher runs would stay at its initial weights. In the reference the
module belongs to both networks: the student runs it too, as its *image-level* pooling — the
summary token reads all the patch tokens of a crop and its output replaces the CLS token in the
image-level DINO loss — and the teacher's copy, averaged from it, additionally summarises each
patch's top-k neighbours. geodino keeps the backbone's CLS token as the image embedding (k-NN,
linear probes, export and fine-tuning all read it), so the pooling that trains the aggregator
is done here instead, in the reference's way: the student's aggregator summarises all patch
tokens of each crop, the teacher's summarises all patch tokens of its two global crops, and a
DINO loss across views (teacher global crop ``i`` against every student crop ``v ≠ i``, its own
center) ties them through the patch head. This ``summary`` term is part of this objective's
loss (so weighted by ``objective.patch_weight``); both terms are reported by :meth:`signals`.
The patch head serves both summaries and patch tokens, as iBOT's shared head does, with
separate centers.
"""

from __future__ import annotations

import functools
from itertools import groupby
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from geodino.models.backbone import BackboneOutput
from geodino.models.multicrop import ExtraHeads
from geodino.models.class_attention import Pool, SummaryAggregator
from geodino.objectives.dino import DINOLoss
from geodino.objectives.neighbours import top_k_neighbour_rows
from geodino.utils import flat_dot
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
)

if TYPE_CHECKING:
    from geodino.config.schema import Config


@dataclass
class SelfPatchOutput:
    """What the SelfPatch heads of one network return: one table of patch-head outputs.

    ``logits`` ``[T + crops * B, K]`` holds, one after the other, the ``T`` patch rows of all crops
    (each crop image-major, patches row-major: the student's patch tokens, or the teacher's
    neighbour summaries, through the patch head), then per crop the summary of all its patch
    tokens through the same head (the student's for every crop, the teacher's for its image-level
    views only: the loss reads no other). One tensor, so that the loss takes one log-softmax
    over it and its gradient needs no re-concatenation (at ~10^4 tokens × 4096 prototypes, a
    copy each).
    """

    logits: torch.Tensor
    patch_counts: list[int]  # patch rows per crop
    crops: int  # crops with a summary

    @property
    def patch_logits(self) -> torch.Tensor:
        """``[T, K]``, the patch rows."""
        return self.logits[: sum(self.patch_counts)]

    @property
    def summary_logits(self) -> torch.Tensor:
        """``[crops, B, K]``, per crop the summary of its patch tokens."""
        return self.logits[sum(self.patch_counts):].unflatten(0, (self.crops, -1))

    @classmethod
    def of(cls, patch_logits: torch.Tensor, patch_counts: list[int], summary_logits: Any) -> SelfPatchOutput:
        """From its two parts (``summary_logits``: ``[crops, B, K]`` or a list of ``[B, K]``)."""
        summaries = torch.stack(list(summary_logits)) if not isinstance(summary_logits, torch.Tensor) else summary_logits
        return cls(torch.cat([patch_logits, summaries.flatten(0, 1)]), list(patch_counts), len(summaries))


class SelfPatchHeads(ExtraHeads):
    """The trainable parts of SelfPatch, held by both networks in ``MultiCropWrapper.extra_heads``.

    ``forward(features, role, n_views=...)`` maps the backbone outputs of every crop to a
    :class:`SelfPatchOutput`: the student heads its patch tokens, the teacher the summaries of their
    top-``k`` neighbours. All the summaries of a call come from one pass of the aggregator, and all
    the rows go through the patch head in one batch.
    """

    teacher_sees_all_crops = True  # same-view targets for the local crops too

    def __init__(self, embed_dim: int, out_dim: int = 4096, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 nlayers: int = 3, norm_last_layer: bool = True, k: int = 4, blocks: int = 2) -> None:
        super().__init__()
        self.k = k
        self.aggregator = SummaryAggregator(embed_dim, depth=blocks)
        self.head = build_patch_head(embed_dim, out_dim, hidden_dim, bottleneck_dim, nlayers, norm_last_layer)

    def forward(self, features: list[BackboneOutput], role: str, masks: Any = None,
                n_views: int | None = None) -> SelfPatchOutput:
        if any(f.patches is None for f in features):
            raise ValueError("SelfPatch needs a backbone that returns patch tokens")
        # Every crop's patch tokens as rows, crop after crop (each image-major, patches row-major).
        # Crops of one size are joined first (one copy per size; a crop's patch tokens are not
        # contiguous, so flattening them one crop at a time would copy each).
        rows = torch.cat([torch.cat([f.patches for f in same]).view(-1, features[0].patches.shape[-1])
                          for _, same in groupby(features, key=lambda f: f.patches.shape[1:])])
        counts = [f.patches.shape[0] * f.patches.shape[1] for f in features]
        # The teacher's crop summaries are only read for its image-level views (the first n_views).
        pooled = features if role == "student" else features[:n_views]
        if role == "teacher":
            layout = tuple((f.patches.shape[0], *f.grid) for f in features)
            # The neighbour summaries (one per patch row, in row order), then the crop summaries.
            head_rows = self.aggregator(rows, _pools(pooled), top_k_neighbour_rows(rows, layout, self.k))
        else:
            head_rows = torch.cat([rows, self.aggregator(rows, _pools(pooled))])
        batch = {f.patches.shape[0] for f in pooled}
        if len(batch) != 1:
            raise ValueError(f"SelfPatch needs crops of one batch size, got {[f.patches.shape[0] for f in pooled]}")
        return SelfPatchOutput(self.head(head_rows), counts, len(pooled))


def _pools(features: list[BackboneOutput]) -> list[Pool]:
    """One :class:`Pool` per run of consecutive crops with the same number of patches: each image
    of a crop is summarised from its own patch rows."""
    pools: list[Pool] = []
    start = 0
    for f in features:
        items, tokens = f.patches.shape[:2]
        if pools and pools[-1].tokens == tokens:
            pools[-1] = pools[-1]._replace(items=pools[-1].items + items)
        else:
            pools.append(Pool(start, items, tokens))
        start += items * tokens
    return pools


class SelfPatchLoss(Objective):
    """The SelfPatch loss, called like every objective: ``loss(student_out, teacher_out, teacher_temp)``.

    Reads ``extra[key]`` (a :class:`SelfPatchOutput`) of both outputs; the teacher must have run
    its patch heads on every student crop, in the student's order.

    Args:
        out_dim: prototypes of the patch head.
        student_temp: softening of the student's outputs.
        center_momentum: of the patch center (and of the summary term's center).
        teacher_temp: sharpening of the teacher's outputs; 0 follows the image-level schedule.
        key: the name of the patch heads in ``extra_heads``.

    Attributes:
        center: :class:`TokenCenter` of the teacher's patch outputs.
        summary: :class:`DINOLoss` on the crop summaries (trains the aggregation module; see
            the module docstring), with its own center.
    """

    def __init__(self, out_dim: int = 4096, student_temp: float = 0.1, center_momentum: float = 0.9,
                 teacher_temp: float = 0.0, key: str = "selfpatch") -> None:
        super().__init__()
        self.key, self.student_temp, self.teacher_temp = key, student_temp, teacher_temp
        self.center = TokenCenter(out_dim, center_momentum)
        self.summary = DINOLoss(out_dim, student_temp, center_momentum)
        self.record_signals = True  # the engine turns it off on steps that do not log
        self._stats = TeacherStats()
        self._parts: dict[str, torch.Tensor] = {}

    def forward(self, student_out: Any, teacher_out: Any, teacher_temp: float) -> torch.Tensor:
        student: SelfPatchOutput = student_out.extra[self.key]
        teacher: SelfPatchOutput = teacher_out.extra[self.key]
        if teacher.patch_counts != student.patch_counts:
            raise ValueError(f"SelfPatch pairs each student crop with the teacher's view of it: the student has "
                             f"{student.patch_counts} tokens per crop, the teacher {teacher.patch_counts}")
        n_teacher_views = len(teacher_out.logits)  # the image-level teacher views: the global crops
        if not 1 <= n_teacher_views <= min(teacher.crops, student.crops) or student.crops < 2:
            raise ValueError(f"SelfPatch's summary term needs >= 2 student crops and 1..n teacher views, got "
                             f"{student.crops} student crops and {n_teacher_views} teacher views "
                             f"({teacher.crops} teacher summaries)")
        temp = self.teacher_temp or teacher_temp
        n = sum(student.patch_counts)
        teacher_rows = teacher.patch_logits.detach()
        teacher_summaries = teacher.summary_logits[:n_teacher_views].detach()
        probs = self.center.probabilities(teacher_rows, temp)
        if self.record_signals:  # before the loss's tables exist: its temporaries add to no peak
            self._stats.record(probs)
        # Both terms as one dot product of targets with the student's log-distributions over its
        # whole table (patch rows, then crop summaries): the patch term's targets are each crop's
        # mean over its tokens, averaged over crops (a weighted sum); the summary term's are
        # DINO's pairs across views (DINOLoss.targets). One log-softmax, one dot, and a backward
        # of four launches. The log-probabilities come first and the targets are written into
        # one table of their shape, so at most three tables of the student's size live at once
        # (probs, log_probs, targets; one is 12.6 GB at 64 images of 2 x 224 + 10 x 96 px and
        # 65536 prototypes), where concatenating the targets before the log-softmax held four.
        log_probs = self.summary.student_log_probs(student.logits)
        with torch.no_grad():
            weights = _crop_mean_weights(tuple(student.patch_counts), str(probs.device))
            targets = torch.empty_like(log_probs)
            torch.mul(probs, weights.unsqueeze(-1), out=targets[:n])
            targets[n:] = self.summary.targets(teacher_summaries, student.crops, temp).flatten(0, 1)
        loss = flat_dot(targets, log_probs)
        if self.record_signals:
            with torch.no_grad():
                self._parts = {"patch_loss": flat_dot(targets[:n], log_probs[:n]),
                               "summary_loss": flat_dot(targets[n:], log_probs[n:])}
        self.center.update(teacher_rows)
        self.summary.update_center(teacher_summaries)
        return loss

    def signals(self) -> dict[str, float]:
        """The two loss terms and the patch teacher's entropy, from the last call (this process)."""
        return {**{k: float(v) for k, v in self._parts.items()}, **self._stats.as_dict()}


@functools.lru_cache(maxsize=16)
def _crop_mean_weights(counts: tuple[int, ...], device: str) -> torch.Tensor:
    """Weights ``[sum(counts)]``, negative: with them a weighted sum of per-token log-likelihoods
    is the mean over crops of each crop's mean cross-entropy."""
    weights = torch.cat([torch.full((n,), -1.0 / (n * len(counts))) for n in counts])
    return weights.to(device)


def _heads(cfg: Config, embed_dim: int, is_vit: bool) -> SelfPatchHeads:
    return SelfPatchHeads(embed_dim, k=cfg.objective.selfpatch.k, blocks=cfg.objective.selfpatch.blocks,
                          **head_settings(cfg))


register_patch_objective("selfpatch", PatchObjective(
    heads=_heads, loss=lambda cfg, key: SelfPatchLoss(**loss_settings(cfg), key=key)))
