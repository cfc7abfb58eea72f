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


def _tiny_vit(in_chans: int):
    torch.manual_seed(0)
    return build_backbone("vit_tiny_patch16_224", in_chans=in_chans, img_size=32, patch_size=8, depth=1)


def test_loader_workers_read_shards_once_each_and_the_features_keep_the_data_order(synthetic_shards) -> None:
    # An iterable dataset read by several loader workers is read once per worker unless each takes
    # its share; the batches then interleave, and the order (which a 1 % label subset indexes) is
    # restored from each sample's position.
    from geodino.data.labelled import ShardSamples

    paths = sorted(str(p) for p in synthetic_shards.glob("train-*.tar"))
    data = ShardSamples(paths, "label", limit=45)
    card = SyntheticScenes(1, 32, 8, seed=0).card
    backbone = _tiny_vit(card.num_bands)
    one, labels_one = extract_feature_sets(backbone, data, card, 32, batch_size=4, workers=0)
    two, labels_two = extract_feature_sets(backbone, data, card, 32, batch_size=4, workers=2)
    assert len(labels_one) == len(labels_two) == 45
    assert torch.equal(labels_one, labels_two)
    assert torch.allclose(one["all"], two["all"], atol=1e-5)


def test_bf16_features_come_back_in_float32_close_to_fp32() -> None:
    from geodino.utils import resolve_precision

    scenes = SyntheticScenes(8, 32, 3, seed=0, split="knn_val")
    data = [dict(scenes[i]) for i in range(8)]
    backbone = _tiny_vit(scenes.card.num_bands)
    fp32, _ = extract_feature_sets(backbone, data, scenes.card, 32, precision="fp32")
    bf16, _ = extract_feature_sets(backbone, data, scenes.card, 32, precision="bf16")
    assert bf16["all"].dtype == torch.float32 and not torch.equal(bf16["all"], fp32["all"])  # it did run in bf16
    cos = torch.nn.functional.cosine_similarity(bf16["all"], fp32["all"], dim=1)
    assert cos.min() > 0.99
    assert resolve_precision("auto", "cpu") == "fp32"  # a CPU runs fp32 unless asked
    with pytest.raises(ValueError, match="precision 'fp8'"):
        resolve_precision("fp8", "cpu")


@pytest.mark.parametrize("damage", [b"", b"not a tensor file", None])
def test_a_damaged_feature_cache_file_is_a_miss_said_aloud_and_replaced(tmp_path, caplog, damage) -> None:
    # A cut-short cache file (a killed write before atomic writes, a full disk, a copy) made
    # `eval linear --cache` fail with EOFError or torch's zip-reader text, naming no file.
    from geodino.eval.features import cached

    calls = []

    def compute():
        calls.append(1)
        return {"features": torch.arange(4.0)}

    assert cached(tmp_path, "train-k", compute)["features"].tolist() == [0, 1, 2, 3]
    path = tmp_path / "train-k.pt"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2] if damage is None else damage)
    with caplog.at_level("WARNING", logger="geodino"):
        assert cached(tmp_path, "train-k", compute)["features"].tolist() == [0, 1, 2, 3]
    assert len(calls) == 2 and f"feature cache {path} cannot be read" in caplog.text
    assert torch.load(path, weights_only=True)["features"].tolist() == [0, 1, 2, 3]  # replaced by a whole one
    assert cached(tmp_path, "train-k", compute)["features"].tolist() == [0, 1, 2, 3] and len(calls) == 2
