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
