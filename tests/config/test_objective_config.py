"""The objective section: defaults, overrides, validation, and what build makes of it."""

import pytest

from geodino.config import ConfigError, load_config
from geodino.objectives.networks import build_extra_heads, build_objectives, objective_weights


def test_defaults_are_image_level_only():
    cfg = load_config(None, [])
    assert cfg.objective.patch == "none"
    assert set(build_objectives(cfg)) == {"dino"} and objective_weights(cfg) == {"dino": 1.0}
    assert build_extra_heads(cfg, 192, is_vit=True) == {}


@pytest.mark.parametrize("patch", ["selfpatch", "masked"])
def test_a_patch_objective_adds_a_weighted_loss_and_heads(patch):
    cfg = load_config(None, [f"objective.patch={patch}", "objective.patch_weight=0.5"])
    assert set(build_objectives(cfg)) == {"dino", patch}
    assert objective_weights(cfg) == {"dino": 1.0, patch: 0.5}
    assert set(build_extra_heads(cfg, 192, is_vit=True)) == {patch}


@pytest.mark.parametrize("override,message", [
    ("objective.patch=ibot", "objective.patch"),
    ("objective.selfpatch_k=9", "selfpatch_k"),
    ("objective.mask_ratio=[0.5,0.1]", "mask_ratio"),
    ("objective.mask_probability=1.5", "mask_probability"),
    ("objective.patch_weight=-1", "patch_weight"),
    ("objective.patch_student_temp=0", "patch_student_temp"),
    ("objective.selfpach_k=3", "did you mean 'selfpatch_k'"),
])
def test_bad_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_masked_objective_needs_a_vit():
    cfg = load_config(None, ["objective.patch=masked", "model.arch=resnet18"])
    with pytest.raises(ConfigError, match="ViT"):
        build_extra_heads(cfg, 512, is_vit=False)
