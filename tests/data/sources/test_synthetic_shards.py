"""The synthetic scenes as standard shards: the same scenes as the map-style dataset, with masks."""

from __future__ import annotations

import numpy as np

from geodino.cli.shard_synthetic import main
from geodino.data.card import DatasetCard
from geodino.data.shards.format import expand_shards, read_index
from geodino.data.shards.read import iter_samples
from geodino.data.synthetic import SyntheticScenes


def test_written_scenes_match_the_generator(tmp_path, capsys) -> None:
    assert main(["--out", str(tmp_path), "--num-samples", "6", "--val-samples", "3", "--image-size", "16",
                 "--shard-size", "4", "--no-progress"]) == 0
    assert "train: 6 written" in capsys.readouterr().out
    index = read_index(tmp_path)
    assert index["splits"] == {"train": {"shards": 2, "samples": 6}, "val": {"shards": 1, "samples": 3}}
    card = DatasetCard.load(tmp_path / "card.yaml")
    assert card.mean is not None and card.modalities == {"s2": [0, 1, 2, 3, 4, 5], "s1": [6, 7]}
    val = {s["key"]: s for s in iter_samples(expand_shards(tmp_path, "val"))}
    scene = SyntheticScenes(3, 16, split="knn_val")[2]
    sample = val["synthetic_val_0000002"]
    np.testing.assert_array_equal(sample["image"], scene["image"].numpy())
    np.testing.assert_array_equal(sample["mask"], scene["mask"].numpy())
    assert sample["label"] == int(scene["label"]) and sample["mask"].dtype == np.uint8
