"""Evaluation on BigEarthNet shards: multi-hot labels19 / labels43, 14 bands checked by name."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from geodino.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "bigearthnet" / "data.py"


@pytest.fixture(scope="module")
def ben_shards(tmp_path_factory) -> Path:
    from geodino.data.card import DatasetCard
    from geodino.data.shards.writer import write_shards
    from geodino.data.sources import bigearthnet as ben

    spec = importlib.util.spec_from_file_location("geodino_fixture_ben_eval", FIXTURES)
    fixture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixture)
    tree = fixture.write_v1(tmp_path_factory.mktemp("ben"), patches=6)  # train 3, val 2, test 1
    out = tmp_path_factory.mktemp("ben-shards")
    items, _ = ben.list_v1(tree["s2_root"], tree["s1_root"], tree["split_csvs"])
    write_shards(out, items, ben.read_patch, DatasetCard.load("bigearthnet-v1"), shard_size=2, progress=False)
    return out


@pytest.fixture(scope="module")
def ben_checkpoint(tmp_path_factory, checkpoint_factory) -> Path:
    from geodino.data.card import DatasetCard

    folder = tmp_path_factory.mktemp("ben-ckpt")
    card = DatasetCard.load("bigearthnet-v1")
    # Statistics of the right order of magnitude (the fixture's bands are random).
    card.with_statistics([1000.0] * 12 + [-15.0, -10.0], [500.0] * 12 + [5.0, 5.0]).save(folder / "card.yaml")
    # the recipe of a run on BigEarthNet shards, whose card the checkpoint carries
    return checkpoint_factory(folder / "checkpoint.pt", f"data.card={folder / 'card.yaml'}", source="shards",
                              root=folder)


def test_knn_labels19_with_modalities(ben_checkpoint, ben_shards, tmp_path, capsys) -> None:
    argv = ["eval", "knn", str(ben_checkpoint), "--train", str(ben_shards), "--val", str(ben_shards),
            "--modalities", "s2,s1,s2+s1", "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == "labels19" and report["task"] == "multi-label"
    result = report["results"]["s1"]
    assert result["num_train"] == 3 and result["num_val"] == 2 and 0 <= result["map_micro"] <= 100
    assert (tmp_path / "knn_modalities.md").read_text().count("|") > 10


def test_linear_labels43_on_named_splits(ben_checkpoint, ben_shards, tmp_path, capsys) -> None:
    argv = ["eval", "linear", str(ben_checkpoint), "--train", str(ben_shards), "--val", str(ben_shards),
            "--train-split", "train", "--val-split", "test", "--label", "labels43", "--n-last-blocks", "1",
            "--epochs", "3", "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)["results"]["all"]
    assert result["num_val"] == 1 and result["feature_dim"] == 192 and "f1_macro" in result


def test_bands_of_another_order_are_refused(synthetic_checkpoint, ben_shards, tmp_path, capsys) -> None:
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", str(ben_shards), "--val", str(ben_shards),
            "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "the model takes" in capsys.readouterr().err


def _with_card_labels(ben_shards: Path, out: Path, labels: list[str] | None) -> Path:
    """A copy of the shards whose card declares ``labels`` (None: says nothing, as older cards)."""
    import shutil

    import yaml

    shutil.copytree(ben_shards, out)
    card = yaml.safe_load((out / "card.yaml").read_text())
    card.pop("labels", None)
    if labels is not None:
        card["labels"] = labels
    (out / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return out


def test_auto_labels_follow_the_card(ben_shards, tmp_path) -> None:
    from geodino.data.card import DatasetCard
    from geodino.eval.data import open_labelled_set

    model_card = DatasetCard.load("bigearthnet-v1")
    assert open_labelled_set(str(ben_shards), "train", model_card, {}).label_key == "labels19"
    reordered = _with_card_labels(ben_shards, tmp_path / "reordered", ["labels43", "labels19"])
    labelled = open_labelled_set(str(reordered), "train", model_card, {})
    assert labelled.label_key == "labels43" and len(labelled.class_names) == 43
    undeclared = _with_card_labels(ben_shards, tmp_path / "undeclared", None)  # older cards: the samples tell
    labelled = open_labelled_set(str(undeclared), "val", model_card, {})
    assert labelled.label_key == "labels19" and len(labelled.class_names) == 19
    with pytest.raises(ValueError, match=r"has no 'label'; it has \['labels19', 'labels43'\]"):
        open_labelled_set(str(ben_shards), "train", model_card, {}, label="label")
