"""Self-distillation objectives. Each is an :class:`~geodino.objectives.base.Objective` called as
``objective(student, teacher, teacher_temp)``, so that an engine can sum any of them without
knowing which they are; its hooks (signals to log, masks for the student's crops) have defaults.

A patch-level objective also adds trainable parts to both networks (an
:class:`~geodino.models.multicrop.ExtraHeads` in ``extra_heads`` under its name) and registers
itself in :data:`~geodino.objectives.base.PATCH_OBJECTIVES`, the names ``objective.patch`` takes.
"""

from geodino.objectives.base import (
    PATCH_OBJECTIVES,
    Objective,
    PatchObjective,
    patch_objective,
    register_patch_objective,
)
from geodino.objectives.dino import DINOLoss
from geodino.objectives.masked import MaskedOutput, MaskedPatchHeads, MaskedPatchLoss
from geodino.objectives.selfpatch import SelfPatchHeads, SelfPatchLoss, SelfPatchOutput

__all__ = [
    "PATCH_OBJECTIVES",
    "Objective",
    "PatchObjective",
    "patch_objective",
    "register_patch_objective",
    "DINOLoss",
    "MaskedOutput",
    "MaskedPatchHeads",
    "MaskedPatchLoss",
    "SelfPatchHeads",
    "SelfPatchLoss",
    "SelfPatchOutput",
]
