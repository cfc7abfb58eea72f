"""In-process runs with a patch-level objective: what is logged, what is saved, exact resume."""

import json

import pytest
import torch

from geodino.config import load_config
from geodino.engine.pretrain import pretrain
from geodino.objectives.networks import build_objectives, build_student_teacher
from geodino.runs.checkpoint import load_checkpoint
from tests.engine.runs import TINY

PATCH = ["objective.patch_out_dim=64", "objective.patch_hidden_dim=32", "objective.patch_bottleneck_dim=16"]


def _cfg(out_dir, patch, *overrides):
    return load_config(None, [f"run.out_dir={out_dir}", *TINY, *PATCH, f"objective.patch={patch}", *overrides])


def _records(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("patch", ["selfpatch", "masked"])
def test_run_logs_both_losses_and_saves_the_patch_heads(tmp_path, patch):
    cfg = _cfg(tmp_path, patch, "run.max_steps=2")
    pretrain(cfg)
    last = _records(tmp_path)[-1]
    for key in ("loss_dino", f"loss_{patch}", f"{patch}_teacher_entropy", f"{patch}_teacher_kl_uniform",
                "teacher_entropy"):
        assert key in last, key
    assert last["loss"] == pytest.approx(last["loss_dino"] + 0.1 * last[f"loss_{patch}"], rel=1e-5)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert any(k.startswith(f"extra_heads.{patch}.") for k in state["teacher"])
    student, teacher = build_student_teacher(cfg, in_chans=8)
    teacher.load_state_dict(state["teacher"])  # strict: the saved teacher is the network the recipe builds
    student.load_state_dict(state["student"])
    objectives = build_objectives(cfg)
    objectives.load_state_dict(state["objectives"])
    assert objectives[patch].center.center.abs().sum() > 0  # the patch center moved and was saved


@pytest.mark.parametrize("patch", ["selfpatch", "masked"])
def test_resumed_run_equals_uninterrupted(tmp_path, patch):
    common = ("train.checkpoint_every=2",)
    pretrain(_cfg(tmp_path / "straight", patch, "run.max_steps=4", *common))
    pretrain(_cfg(tmp_path / "resumed", patch, "run.max_steps=2", *common))
    pretrain(_cfg(tmp_path / "resumed", patch, "run.max_steps=4", *common))
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("straight", "resumed"))
    for key in a["teacher"]:
        torch.testing.assert_close(a["teacher"][key], b["teacher"][key], atol=1e-6, rtol=0, msg=key)
    for key in a["objectives"]:
        torch.testing.assert_close(a["objectives"][key], b["objectives"][key], atol=1e-6, rtol=0, msg=key)
    assert [r["loss"] for r in _records(tmp_path / "straight")] == pytest.approx(
        [r["loss"] for r in _records(tmp_path / "resumed")], abs=1e-6)


@pytest.mark.slow
def test_selfpatch_recipe_streams_bigearthnet_shards(tmp_path):
    from geodino.cli import main
    from geodino.config.load import RECIPES_DIR
    from tests.data.conftest import load_fixture_module
    from tests.engine.test_recipes import SHRINK

    recipe = RECIPES_DIR / "bigearthnet_dinomm_selfpatch_vits16.yaml"
    cfg = load_config(recipe, ["data.root=unused"])
    assert (cfg.objective.patch, cfg.model.patch_size, cfg.augment.global_size // cfg.model.patch_size) == (
        "selfpatch", 16, 7)  # a 7x7 grid at 112 px
    tree = load_fixture_module("bigearthnet").write_v1(tmp_path / "ben", patches=6)
    shards = tmp_path / "shards"
    assert main(["shard", "bigearthnet", "--s2-root", str(tree["s2_root"]), "--s1-root", str(tree["s1_root"]),
                 "--out", str(shards), "--shard-size", "2", "--no-progress"]) == 0
    assert main(["stats", str(shards)]) == 0
    # 48-px crops make 3x3 and 1x1 grids: a patch with no neighbour at all must work too.
    cfg = load_config(recipe, [f"data.root={shards}", f"run.out_dir={tmp_path / 'run'}", "data.samples_per_epoch=4",
                               *SHRINK, "augment.global_size=48", *PATCH])
    assert pretrain(cfg)["steps"] == 2
    last = _records(tmp_path / "run")[-1]
    assert "loss_selfpatch" in last and "selfpatch_teacher_entropy" in last


@pytest.mark.slow
@pytest.mark.parametrize("patch", ["masked", "selfpatch"])
def test_two_processes_match_one_process(tmp_path, patch):
    # Masks are drawn for the global batch and sliced; the patch centers average over all processes.
    from tests.engine.runs import assert_same_weights, losses, run_pretrain, teacher

    common = ("model.drop_path_rate=0", "train.checkpoint_every=100", f"objective.patch={patch}", *PATCH)
    run_pretrain(tmp_path / "one", "data.batch_size=16", *common)
    run_pretrain(tmp_path / "two", "data.batch_size=8", *common, nproc=2)
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 8
    for a, b in zip(one, two):
        assert abs(a - b) < 1e-4, (one, two)
    assert_same_weights(teacher(tmp_path / "one"), teacher(tmp_path / "two"), atol=1e-5)
