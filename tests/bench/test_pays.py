"""``geodino bench pays`` and its held-out worlds: deterministic generators of the documented
layout, a mean-spectrum baseline computed from the data, and the whole bench on a tiny setting."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from geodino.bench.pays import (add_arguments, band_means, budget_overrides, mean_spectrum_features,
                                mean_spectrum_scores, run)
from geodino.bench.worlds import RADAR_CLASSES, S1_BANDS, S2_BANDS, WORLDS, make_patch, write_world
from geodino.data.card import Band, DatasetCard

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("world", list(WORLDS))
def test_a_world_is_a_pure_function_of_seed_split_and_index(world):
    patch = make_patch(world, 5, seed=1, size=24)
    assert patch["s2"].dtype == np.uint16 and patch["s2"].shape == (12, 24, 24)
    assert patch["s1"].dtype == np.float32 and patch["s1"].shape == (2, 24, 24)
    k = len(WORLDS[world].classes)
    assert patch["labels"].dtype == np.uint8 and patch["labels"].shape == (k,)
    assert set(np.unique(patch["labels"])) <= {0, 1} and patch["labels"].sum() >= 1
    assert np.isfinite(patch["s1"]).all() and -60 < patch["s1"].min() and patch["s1"].max() < 20  # dB
    again = make_patch(world, 5, seed=1, size=24)
    assert all(np.array_equal(patch[p], again[p]) for p in patch)
    for other in (make_patch(world, 6, seed=1, size=24), make_patch(world, 5, seed=2, size=24),
                  make_patch(world, 5, seed=1, size=24, split="val")):
        assert not np.array_equal(patch["s2"], other["s2"])


def test_the_worlds_differ_in_their_classes_and_patches():
    assert len({WORLDS[w].classes for w in WORLDS}) == len(WORLDS)
    s2 = [make_patch(w, 0, seed=0, size=16)["s2"] for w in WORLDS]
    assert not any(np.array_equal(a, b) for i, a in enumerate(s2) for b in s2[i + 1:])


def test_radar_pairs_look_alike_optically_and_differ_in_the_radar():
    # Patches holding only forest or only flooded forest: the same optical spectrum, VV far apart.
    seen = {0: [], 1: []}
    for i in range(300):
        p = make_patch("radar", i, seed=0, size=16)
        only = np.flatnonzero(p["labels"])
        if len(only) == 1 and only[0] in seen:
            seen[only[0]].append(p)
    forest, flooded = seen[0], seen[1]
    assert len(forest) >= 5 and len(flooded) >= 5, RADAR_CLASSES[:2]
    nir = [np.median([np.median(p["s2"][7]) for p in ps]) for ps in (forest, flooded)]
    vv = [np.median([np.median(p["s1"][1]) for p in ps]) for ps in (forest, flooded)]
    assert abs(nir[0] - nir[1]) / nir[0] < 0.15
    assert vv[1] - vv[0] > 2.0  # double bounce


def test_a_world_written_as_shards_decodes_to_the_generator_with_its_coarse_bands_coarser(tmp_path):
    from geodino.data.shards.read import iter_samples
    from geodino.data.splits import training_split, validation_split

    summary = write_world(tmp_path, "patterns", seed=3, size=24, train_samples=8, val_samples=4, shard_size=8,
                          progress=False)
    assert summary["written"] == {"train": 8, "val": 4}
    card = DatasetCard.load(tmp_path / "card.yaml")
    assert card.band_names == S2_BANDS + S1_BANDS == DatasetCard.load("bigearthnet-v1").band_names
    assert card.label_kinds == ["labels"] and list(card.classes) == list(WORLDS["patterns"].classes)
    assert card.mean is not None and card.extra["statistics_from"]["samples"] == 8  # the train split only
    sample = next(iter(iter_samples(validation_split(tmp_path).paths)))
    patch = make_patch("patterns", sample["meta"]["index"], seed=3, size=24, split="val")
    assert np.array_equal(sample["image"][1], patch["s2"][1].astype(np.float32))  # B02, 10 m
    assert np.array_equal(sample["image"][12:], patch["s1"])
    assert np.array_equal(sample["labels"], patch["labels"])
    shapes = {tuple(g["bands"]): g["shape"] for g in sample["meta"]["groups"]}
    assert shapes[("B01", "B09")] == [2, 4, 4] and [6, 12, 12] in shapes.values()  # 60 m and 20 m
    assert len(training_split(tmp_path).paths) == 1


def _toy_card() -> DatasetCard:
    bands = [Band("a", "s2"), Band("b", "s2"), Band("vv", "s1")]
    return DatasetCard("toy", bands, mean=[10.0, 20.0, -5.0], std=[2.0, 4.0, 1.0])


def test_the_mean_spectrum_baseline_is_computed_from_the_data():
    def image(a, b, vv):
        return torch.tensor([a, b, vv], dtype=torch.float32).reshape(3, 2, 2)

    # Hand-made band means: (12, 22, -6), (8, 24, -4), (13, 23, -3); standardised with the toy card
    # they are (1, 0.5, -1), (-1, 1, 1) and (1.5, 0.75, 2).
    images = [image([12] * 4, [20, 24, 20, 24], [-6] * 4), image([8] * 4, [24] * 4, [-4] * 4),
              image([11, 15, 13, 13], [23] * 4, [-3] * 4)]
    labels = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])]
    toy = SimpleNamespace(dataset=[{"image": x, "labels": y} for x, y in zip(images, labels)], label_key="labels")
    means, y = band_means(toy)
    assert torch.equal(means, torch.tensor([[12, 22, -6], [8, 24, -4], [13, 23, -3]], dtype=torch.float64))
    card = _toy_card()
    assert torch.allclose(mean_spectrum_features(means, card, "s2+s1"),
                          torch.tensor([[1, 0.5, -1], [-1, 1, 1], [1.5, 0.75, 2]]))
    assert torch.allclose(mean_spectrum_features(means, card, "s2"), torch.tensor([[1, 0.5, 0], [-1, 1, 0],
                                                                                   [1.5, 0.75, 0]]))
    # Bank: samples 0 and 1; query: sample 2, labelled as sample 0. Optically it points exactly
    # where sample 0 does, so it ranks its own class first (AP 100); its radar value has sample 1's
    # sign, so it ranks the wrong class first and finds the right one second (AP 1/2).
    scores = mean_spectrum_scores(means[:2], y[:2], means[2:], y[2:], card, ["s2", "s1"], ["knn"], k=2)
    assert scores["knn"]["s2"]["map_micro"] == pytest.approx(100.0)
    assert scores["knn"]["s1"]["map_micro"] == pytest.approx(50.0)


def test_a_budget_is_one_complete_schedule():
    assert budget_overrides(250, 32, 0.1) == ["optim.epochs=10", "optim.warmup_epochs=1",
                                              "data.samples_per_epoch=800", "run.max_steps=250"]
    assert budget_overrides(2, 16, 0.1)[:3] == ["optim.epochs=2", "optim.warmup_epochs=0",
                                                "data.samples_per_epoch=16"]
    assert budget_overrides(7, 8, 0.1)[0] == "optim.epochs=7"
    with pytest.raises(ValueError):
        budget_overrides(0, 8, 0.1)


TINY = ["--worlds", "radar", "--steps", "2", "--size", "16", "--train-samples", "64", "--val-samples", "32",
        "--linear-epochs", "5", "--no-progress", "--set", "model.depth=1", "model.out_dim=256",
        "model.hidden_dim=64", "model.bottleneck_dim=32", "data.batch_size=16", "augment.global_size=16",
        "augment.local_size=8", "data.shuffle_buffer=32", "train.precision=no"]


def test_the_bench_runs_end_to_end_and_continues_where_it_stopped(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), *TINY])
    line = run(args)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(line))
    rows = line["rows"]
    expected = [(p, m) for p in ("knn", "linear") for m in ("s2", "s1", "s2+s1")]
    assert [(r["probe"], r["input"]) for r in rows] == expected
    assert all(0 <= r["mean_spectrum"] <= 100 and 0 <= r["random_init"] <= 100 and 0 <= r["pretrained"]["2"] <= 100
               for r in rows)
    for path in line["files"].values():
        assert (tmp_path / path.rsplit("/", 1)[-1]).stat().st_size > 0
    table = (tmp_path / "pays.md").read_text()
    assert "| radar | 0 | k-NN | S2 |" in table and "2 steps" in table
    report = json.loads((tmp_path / "pays.json").read_text())
    assert report["worlds"][0]["runs"]["2"]["steps"] == 2

    # Again: the run is complete and every score is kept, so nothing is trained or scored twice.
    run_dir = tmp_path / "runs" / "radar-seed0-16px-n64" / "steps2"
    checkpoint = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    kept = [run_dir / "pays_time.json", run_dir / "pays_eval" / "pays_scores.json",
            run_dir.parent / "random_init" / "pays_scores.json"]
    before = [path.read_text() for path in kept]
    assert run(args)["rows"] == rows
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == checkpoint
    assert [path.read_text() for path in kept] == before


def test_a_variant_runs_beside_the_default_on_the_same_worlds_and_random_init(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = run(parser.parse_args(["--out", str(tmp_path), *TINY]))
    variant = run(parser.parse_args(["--out", str(tmp_path), *TINY, "--variant", "p0",
                                     "--set", "augment.modality_drop_p=0", "--linear-avgpool"]))
    runs = tmp_path / "runs" / "radar-seed0-16px-n64"
    assert (runs / "steps2").is_dir() and (runs / "steps2-p0").is_dir()
    assert (tmp_path / "pays-p0.md").is_file() and (tmp_path / "pays.md").is_file()
    assert "mean patch token" in (tmp_path / "pays-p0.md").read_text()
    # The random init is the same weights, scored once for the k-NN; the linear probe on other
    # features (CLS + mean patch token) is scored anew.
    knn = [r["random_init"] for r in base["rows"] if r["probe"] == "knn"]
    assert [r["random_init"] for r in variant["rows"] if r["probe"] == "knn"] == knn
    dip = json.loads((tmp_path / "pays-p0.json").read_text())["worlds"][0]["runs"]["2"]
    assert 0 <= dip["min_teacher_entropy"] <= dip["log_k"] and dip["min_entropy_step"] in (1, 2)
    with pytest.raises(ValueError, match="--variant"):
        run(parser.parse_args(["--out", str(tmp_path), *TINY, "--variant", "a/b"]))


def test_a_bad_recipe_key_is_refused_before_any_data_are_made(tmp_path):
    """An unknown --set key used to surface after the worlds were written and probed (minutes)."""
    from geodino.config import ConfigError

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), *TINY, "foo.bar=1"])
    with pytest.raises(ConfigError, match="unknown key 'foo'"):
        run(args)
    assert not (tmp_path / "worlds").exists()
