"""Patch-level objectives are found by name in a registry and talk to the engine through named hooks
(issue 14): a new objective needs no change in the engine, the networks or the recipe checks."""

import pytest
import torch

from geodino.config import ConfigError, load_config
from geodino.models.multicrop import ExtraHeads
from geodino.objectives import PATCH_OBJECTIVES, Objective, PatchObjective, register_patch_objective
from geodino.objectives.networks import build_objectives, build_student_teacher
from tests.engine.runs import TINY


class CountingHeads(ExtraHeads):
    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, features, role, masks=None, n_views=None):
        return torch.stack([f.cls.mean() for f in features]) * self.scale


class CountingLoss(Objective):
    def forward(self, student_out, teacher_out, teacher_temp):
        return (student_out.extra["counting"] - teacher_out.extra["counting"].mean()).pow(2).mean()


@pytest.fixture
def counting():
    register_patch_objective("counting", PatchObjective(heads=lambda cfg, dim, is_vit: CountingHeads(dim),
                                                        loss=lambda cfg, key: CountingLoss()))
    yield
    del PATCH_OBJECTIVES["counting"]


def test_a_registered_objective_is_built_from_its_name_with_default_hooks(counting):
    cfg = load_config(None, [*TINY, "objective.patch=counting"])
    student, teacher = build_student_teacher(cfg, in_chans=8)
    assert isinstance(student.extra_heads["counting"], CountingHeads)
    objectives = build_objectives(cfg)
    assert list(objectives) == ["dino", "counting"]
    loss = objectives["counting"]
    assert loss.signals() == {} and not loss.wants_student_masks()
    assert student.extra_heads["counting"].student_mask_token() is None


def test_unknown_names_are_refused_and_names_are_unique():
    with pytest.raises(ConfigError, match=r"objective\.patch: 'ibot' is not one of \['none', "):
        load_config(None, ["objective.patch=ibot"])
    with pytest.raises(ValueError, match="already registered"):
        register_patch_objective("selfpatch", PATCH_OBJECTIVES["selfpatch"])
