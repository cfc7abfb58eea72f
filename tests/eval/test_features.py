"""Feature extraction for evaluation (geodino/eval/features.py)."""

from __future__ import annotations

import pytest
import torch

from geodino.data.synthetic import SyntheticScenes
from geodino.eval.features import extract_feature_sets
from geodino.models.backbone import build_backbone


def test_non_finite_features_are_refused_not_scored() -> None:
    """A NaN image must stop the evaluation (it once gave f1 0.00 and a mAP halved, exit 0)."""
    scenes = SyntheticScenes(4, 16, 3, seed=0, split="knn_val")
    backbone = build_backbone("vit_tiny_patch16_224", in_chans=scenes.card.num_bands, img_size=16, patch_size=8,
                              depth=1)
    data = [dict(scenes[i]) for i in range(4)]
    sets, _ = extract_feature_sets(backbone, data, scenes.card, 16)
    assert torch.isfinite(sets["all"]).all()
    data[2]["image"] = torch.full_like(data[2]["image"], float("nan"))
    with pytest.raises(ValueError, match="1 of 4 feature vectors .* not finite, the first at sample 2"):
        extract_feature_sets(backbone, data, scenes.card, 16)
