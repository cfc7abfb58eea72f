"""Self-distillation objectives. Each is a module called as ``objective(student, teacher, teacher_temp)``,
so that an engine can sum any of them without knowing which they are.

Optional hooks an engine calls when an objective has them:

- ``signals() -> dict[str, float]``: extra quantities to log (loss terms, the patch teacher's
  entropy), from the last call; the engine prefixes them with the objective's name. An objective
  whose statistics are costly has a ``record_signals`` flag, which the engine sets before each
  call to whether that step logs.
- ``student_masks(grids, n_global, generator, offset, batch, total)``: patch masks for the
  student's crops, drawn for the global batch and sliced to this process's rows.

The trainable parts of a patch-level objective (its ``*Heads`` module) live in the networks'
``extra_heads`` under the objective's name.
"""

from geodino.objectives.dino import DINOLoss
from geodino.objectives.masked import MaskedOutput, MaskedPatchHeads, MaskedPatchLoss
from geodino.objectives.selfpatch import SelfPatchHeads, SelfPatchLoss, SelfPatchOutput

__all__ = [
    "DINOLoss",
    "MaskedOutput",
    "MaskedPatchHeads",
    "MaskedPatchLoss",
    "SelfPatchHeads",
    "SelfPatchLoss",
    "SelfPatchOutput",
]
