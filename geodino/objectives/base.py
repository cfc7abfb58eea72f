"""What an objective is to the engine: :class:`Objective` (a loss with named hooks), and the
registry of patch-level objectives that recipes name with ``objective.patch``. The trainable parts
a patch-level objective adds to both networks are an :class:`~geodino.models.multicrop.ExtraHeads`
(the networks' side of the contract).

The engine and the networks call these hooks on every objective; an objective that has nothing to
say keeps the defaults. No one asks an objective what it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn as nn

from geodino.models.multicrop import ExtraHeads
from geodino.rng import RowRandom

if TYPE_CHECKING:
    from geodino.config.schema import Config


class Objective(nn.Module):
    """A self-distillation loss: ``objective(student_out, teacher_out, teacher_temp) -> loss``."""

    #: The engine sets this before each call: True on steps that log. An objective whose
    #: statistics cost a pass over every output only computes them then.
    record_signals: bool = False

    def signals(self) -> dict[str, float]:
        """Quantities to log from the last call (the engine prefixes them with the objective's name)."""
        return {}

    def wants_student_masks(self) -> bool:
        """Whether :meth:`student_masks` gives masks for the student's crops."""
        return False

    def student_masks(self, grids: list[tuple[int, int]], n_global: int, rng: RowRandom) -> list[torch.Tensor | None]:
        """Patch masks ``[n, h, w]`` per student crop (None: unmasked) for ``rng``'s ``n`` rows of the
        global batch."""
        raise NotImplementedError(f"{type(self).__name__} does not mask the student's crops")


@dataclass(frozen=True)
class PatchObjective:
    """A patch-level objective a recipe can name: how to build its heads and its loss from a recipe."""

    heads: Callable[[Config, int, bool], ExtraHeads]  # (recipe, backbone embed dim, is a ViT)
    loss: Callable[[Config, str], Objective]  # (recipe, its name: the key of its heads' outputs)


PATCH_OBJECTIVES: dict[str, PatchObjective] = {}


def register_patch_objective(name: str, objective: PatchObjective) -> None:
    if name in PATCH_OBJECTIVES or name == "none":
        raise ValueError(f"patch objective {name!r} is already registered")
    PATCH_OBJECTIVES[name] = objective


def patch_objective(name: str) -> PatchObjective:
    try:
        return PATCH_OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"objective.patch: {name!r} is not one of {['none', *PATCH_OBJECTIVES]}") from None


def head_settings(cfg: Config) -> dict[str, Any]:
    """The patch head's sizes, shared by every patch-level objective."""
    o = cfg.objective
    return dict(out_dim=o.patch_out_dim, hidden_dim=o.patch_hidden_dim, bottleneck_dim=o.patch_bottleneck_dim,
                nlayers=o.patch_nlayers, norm_last_layer=cfg.model.norm_last_layer)


def loss_settings(cfg: Config) -> dict[str, Any]:
    """The patch loss's temperatures and center, shared by every patch-level objective."""
    o = cfg.objective
    return dict(out_dim=o.patch_out_dim, student_temp=o.patch_student_temp,
                center_momentum=o.patch_center_momentum, teacher_temp=o.patch_teacher_temp)
