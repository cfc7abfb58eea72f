"""Segmentation recipes: the shipped ones load, mistakes are named."""

from __future__ import annotations

import pytest

from geodino.config import ConfigError
from geodino.finetune.config import load_seg_config


def test_shipped_recipes_load(tmp_path) -> None:
    cfg = load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none"])
    assert cfg.model.head == "upernet" and cfg.data.source == "synthetic" and cfg.model.patch_size == 8
    cfg = load_seg_config("seg_reben_upernet_vits16", ["model.pretrained=none", f"data.root={tmp_path}"])
    assert cfg.model.levels == [2, 5, 8, 11] and cfg.data.val_split == "val"  # the name the shard writer uses


def test_mistakes_are_named(tmp_path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'layer_decay'"):
        load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none", "model.layer_decy=0.5"])
    with pytest.raises(ConfigError, match="model.pretrained"):
        load_seg_config("seg_reben_upernet_vits16", [f"data.root={tmp_path}"])
    with pytest.raises(ConfigError, match="not found"):
        load_seg_config("seg_synthetic_quickstart", [f"model.pretrained={tmp_path}/missing.pt"])
    with pytest.raises(ConfigError, match="model.head"):
        load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none", "model.head=fpn"])
    with pytest.raises(ConfigError, match="data.root"):
        load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none", "data.source=sen12ms"])
    with pytest.raises(ConfigError, match="data.root='x' is set but data.source='synthetic' reads no files"):
        load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none", "data.root=x"])
    with pytest.raises(ConfigError, match="'imagefolder' cannot be used for segmentation"):
        load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none", "data.source=imagefolder"])


@pytest.mark.parametrize("override,message", [
    ("train.log_every=0", r"train\.log_every: must be >= 1, got 0"),  # was a ZeroDivisionError mid-run
    ("train.max_steps=-1", r"train\.max_steps: must be >= 0"),  # reported -1 steps and trained none
    ("train.predictions=-1", r"train\.predictions: must be >= 0"),
    ("data.batch_size=1", r"data\.batch_size: must be >= 2 \(the decoders use batch norm\)"),
    ("model.layer_decay=0", r"model\.layer_decay: must be in \(0, 1\]"),
])
def test_seg_values_outside_their_range_are_refused_by_name(override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none", override])


def test_zero_synthetic_scenes_is_refused(tmp_path) -> None:
    """0 means every sample of a real source; of the synthetic one it meant none (mIoU NaN)."""
    with pytest.raises(ConfigError, match=r"data\.val_samples=0: the synthetic source makes as many scenes as asked"):
        load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none", "data.val_samples=0"])
