"""``geodino eval knn|linear CKPT --random-init``: the untrained backbone of the checkpoint's recipe,
as a pretraining run of that recipe holds it at step 0, scored as the baseline."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from geodino.cli import main
from geodino.config import Config
from geodino.config.load import apply_mapping
from geodino.eval.checkpoint import load_random_backbone, load_teacher_backbone
from geodino.runs.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def _step0_teacher_backbone(checkpoint, out_dir) -> dict[str, torch.Tensor]:
    """The teacher backbone of a real pretraining run of the checkpoint's recipe, before its first step."""
    from geodino.engine.pretrain import Pretrainer

    cfg = Config()
    apply_mapping(cfg, load_checkpoint(checkpoint)["config"])
    cfg.run.out_dir = str(out_dir)
    return Pretrainer(cfg).core.teacher.backbone.state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_random_backbone_is_the_step0_teacher_of_the_recipe(pretrained_checkpoint, tmp_path) -> None:
    random_backbone, card, cfg = load_random_backbone(pretrained_checkpoint)
    assert card.name == load_teacher_backbone(pretrained_checkpoint)[1].name  # the card beside the checkpoint
    ours = random_backbone.state_dict()
    assert _same(ours, _step0_teacher_backbone(pretrained_checkpoint, tmp_path / "run"))
    trained = load_teacher_backbone(pretrained_checkpoint)[0].state_dict()
    assert ours.keys() == trained.keys() and not _same(ours, trained)
    assert not random_backbone.training


def test_the_recipe_seed_decides_the_weights(checkpoint_factory, tmp_path) -> None:
    seven = checkpoint_factory(tmp_path / "seed7" / "checkpoint.pt", "run.seed=7")
    zero = checkpoint_factory(tmp_path / "seed0" / "checkpoint.pt", "run.seed=0")
    torch.manual_seed(123)
    expected_draw = torch.rand(4)
    torch.manual_seed(123)
    backbone7 = load_random_backbone(seven)[0].state_dict()
    assert torch.equal(torch.rand(4), expected_draw)  # the caller's random stream is left alone
    assert _same(backbone7, _step0_teacher_backbone(seven, tmp_path / "run7"))
    assert not _same(backbone7, load_random_backbone(zero)[0].state_dict())
    with pytest.raises(ValueError, match="does not fit"):  # a card of other bands, as for the trained teacher
        load_random_backbone(seven, card="bigearthnet-v1")


@pytest.fixture(scope="module")
def moved_checkpoint(tmp_path_factory, synthetic_shards):
    """The recipe of ``pretrained_checkpoint`` trained so that its teacher leaves the initial weights.

    Three steps of the session fixture start in the lr warm-up under a 0.996 teacher momentum: its
    teacher is within ~1e-6 of the initialisation and scores exactly as the random one does. Here the
    teacher follows the student (momentum 0) and the lr has no warm-up.
    """
    from geodino.config import load_config
    from geodino.engine.pretrain import pretrain
    from geodino.utils import torch_threads
    from runs import tiny_on

    out = tmp_path_factory.mktemp("moved")
    cfg = load_config(None, [*tiny_on("shards", synthetic_shards), f"run.out_dir={out}",
                             "data.shuffle_buffer=32", "run.max_steps=4", "optim.warmup_epochs=0",
                             "optim.lr=0.5", "optim.momentum_teacher=0.0"])
    with torch_threads(1):
        pretrain(cfg)
    return out / "checkpoint.pt"


def _run_folder(checkpoint, tmp_path):
    """A copy of the run (checkpoint + card), so that default output folders land in tmp."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint.pt", "card.yaml"):
        shutil.copy(checkpoint.parent / name, run / name)
    return run


def test_knn_random_init_of_the_pretrained_checkpoint(pretrained_checkpoint, synthetic_shards, tmp_path,
                                                      capsys) -> None:
    run = _run_folder(pretrained_checkpoint, tmp_path)
    assert main(["eval", "knn", str(run / "checkpoint.pt"), "--train", str(synthetic_shards), "--val",
                 str(synthetic_shards), "--random-init", "--modalities", "s2,s1"]) == 0
    assert "; backbone: random-init (seed 0), untrained" in capsys.readouterr().out
    report = json.loads((run / "eval_random_init" / "knn.json").read_text())
    assert report["backbone"] == "random-init (seed 0)" and report["card"] == load_teacher_backbone(
        pretrained_checkpoint)[1].name
    assert list(report["results"]) == ["s2", "s1"] and report["results"]["s1"]["num_val"] == 32
    assert "random-init (seed 0)" in (run / "eval_random_init" / "knn_modalities.md").read_text()
    assert not (run / "eval").exists()


def test_knn_random_init_reports_apart_from_the_trained_model(moved_checkpoint, synthetic_shards, tmp_path,
                                                               capsys) -> None:
    run = _run_folder(moved_checkpoint, tmp_path)
    argv = ["eval", "knn", str(run / "checkpoint.pt"), "--train", str(synthetic_shards), "--val",
            str(synthetic_shards)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--random-init"]) == 0
    text = capsys.readouterr().out
    assert "random-init (seed 0)" in text
    trained = json.loads((run / "eval" / "knn.json").read_text())
    baseline = json.loads((run / "eval_random_init" / "knn.json").read_text())
    assert trained["backbone"] == "teacher" and baseline["backbone"] == "random-init (seed 0)"
    assert baseline["card"] == trained["card"] and baseline["results"]["all"]["num_val"] == 32
    assert baseline["results"] != trained["results"]


def test_linear_random_init_does_not_reuse_the_trained_features(moved_checkpoint, synthetic_shards, tmp_path,
                                                                capsys) -> None:
    cache = tmp_path / "cache"
    argv = ["eval", "linear", str(moved_checkpoint), "--train", str(synthetic_shards), "--val",
            str(synthetic_shards), "--n-last-blocks", "2", "--epochs", "5", "--cache", str(cache), "--json"]
    assert main([*argv, "--out", str(tmp_path / "trained")]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert main([*argv, "--out", str(tmp_path / "random"), "--random-init"]) == 0
    baseline = json.loads(capsys.readouterr().out)
    assert len(list(cache.glob("*.pt"))) == 4  # train and val features of each backbone
    assert baseline["backbone"] == "random-init (seed 0)" and baseline["results"] != trained["results"]


def test_a_path_that_is_no_checkpoint_gives_the_same_one_line_error(tmp_path, capsys) -> None:
    not_a_checkpoint = tmp_path / "model.pt"
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, not_a_checkpoint)
    errors = []
    for flag in ([], ["--random-init"]):
        argv = ["eval", "knn", str(not_a_checkpoint), "--train", "synthetic", "--val", "synthetic",
                "--out", str(tmp_path / "out"), *flag]
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
        errors.append(captured.err)
    assert errors[0] == errors[1] and "is not a geodino pretraining checkpoint" in errors[1]
    assert not (tmp_path / "out").exists()
