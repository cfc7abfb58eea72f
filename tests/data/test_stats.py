"""Band statistics: streaming Chan merge against numpy, and writing them into the card."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from geodino.cli import main
from geodino.data.card import DatasetCard
from geodino.data.shards.format import expand_shards
from geodino.data.shards.read import iter_samples
from geodino.data.stats import BandMoments, compute_band_statistics, write_statistics


def _stack(paths) -> np.ndarray:
    return np.stack([s["image"] for s in iter_samples(paths)]).astype(np.float64)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_statistics_match_numpy(ben_v1_shards, batch_size) -> None:
    paths = expand_shards(ben_v1_shards)
    stats = compute_band_statistics(paths, batch_size=batch_size, progress=False)
    data = _stack(paths)
    np.testing.assert_allclose(stats.mean, data.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(stats.std, data.std(axis=(0, 2, 3)), rtol=1e-10)
    assert stats.samples == 4 and stats.pixels_per_band == 4 * 120 * 120 and stats.bands[-2:] == ["VH", "VV"]


def test_chan_merge_is_stable_on_large_offsets() -> None:
    rng = np.random.default_rng(0)
    x = (1e6 + rng.normal(0, 1e-2, size=(40, 2, 8, 8))).astype(np.float64)
    moments = BandMoments()
    for chunk in np.array_split(x, 7):
        moments.update(chunk)
    np.testing.assert_allclose(moments.std, x.std(axis=(0, 2, 3)), rtol=1e-6)


def test_written_into_the_card(ben_v1_shards, tmp_path) -> None:
    stats = compute_band_statistics(expand_shards(ben_v1_shards, "train"), progress=False)
    card = write_statistics(stats, tmp_path / "card.yaml", template=ben_v1_shards / "card.yaml")
    again = DatasetCard.load(tmp_path / "card.yaml")
    assert again.mean == card.mean == stats.mean and again.std == stats.std
    assert again.extra["statistics_from"]["samples"] == 2


def test_cli_measures_train_split_and_writes_both_cards(ben_v1_shards, tmp_path, capsys) -> None:
    shards = tmp_path / "shards"
    shutil.copytree(ben_v1_shards, shards)
    out = tmp_path / "mine.yaml"
    assert main(["stats", str(shards), "--card", str(out), "--no-progress"]) == 0
    train = _stack(expand_shards(shards, "train"))
    for path in (shards / "card.yaml", out):
        card = DatasetCard.load(path)
        np.testing.assert_allclose(card.mean, train.mean(axis=(0, 2, 3)), rtol=1e-12)
        assert card.band_names[-2:] == ["VH", "VV"]
    assert "VV" in capsys.readouterr().out
