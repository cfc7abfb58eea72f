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
    ("objective.selfpatch.k=9", r"objective.selfpatch.k: must be in \[1, 8\] \(a 3x3 window has 8 neighbours\)"),
    ("objective.masked.ratio=[0.5,0.1]", "objective.masked.ratio"),
    ("objective.masked.probability=1.5", "objective.masked.probability"),
    ("objective.patch_weight=-1", "patch_weight"),
    ("objective.patch_student_temp=0", "patch_student_temp"),
    ("objective.selfpach.k=3", "did you mean 'selfpatch'"),
    # the flat keys of earlier versions name their new place
    ("objective.selfpatch_k=4", r"objective.selfpatch_k is now objective.selfpatch.k"),
    ("objective.mask_ratio=[0.1,0.5]", r"objective.mask_ratio is now objective.masked.ratio"),
    # allowed values are Literal types of the schema, checked by the loader
    ("train.precision=fp8", r"train.precision: 'fp8' is not one of \['no', 'bf16', 'fp16'\]"),
    ("augment.band_ops=spectral", r"augment.band_ops: 'spectral' is not one of \['joint', 'physical'\]"),
])
def test_bad_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_masked_objective_needs_a_vit():
    cfg = load_config(None, ["objective.patch=masked", "model.arch=resnet18"])
    with pytest.raises(ConfigError, match="ViT"):
        build_extra_heads(cfg, 512, is_vit=False)


def test_a_checkpoint_recipe_of_an_earlier_version_is_upgraded():
    from geodino.config import config_to_dict
    from geodino.config.load import apply_mapping, upgrade_saved_config
    from geodino.config.schema import Config

    saved = config_to_dict(load_config(None, ["objective.patch=selfpatch", "objective.selfpatch.k=3"]))
    old = {**saved, "objective": {**{k: v for k, v in saved["objective"].items() if k not in ("selfpatch", "masked")},
                                  "selfpatch_k": 3, "selfpatch_blocks": 2, "mask_probability": 0.5,
                                  "mask_ratio": [0.1, 0.5]}}
    assert upgrade_saved_config(old) == saved
    cfg = Config()
    apply_mapping(cfg, upgrade_saved_config(old))
    assert cfg.objective.selfpatch.k == 3 and "selfpatch_k" in old["objective"]  # the input is left as it was
