"""In-process runs of the engine: outputs, the non-finite guard, resume safety checks."""

import json

import pytest
import torch

from geodino.config import ConfigError, load_config
from geodino.engine.checkpoint import load_checkpoint
from geodino.engine.pretrain import NonFiniteLossError, pretrain
from tests.engine.runs import TINY


def _cfg(out_dir, *overrides):
    return load_config(None, [f"run.out_dir={out_dir}", *TINY, *overrides])


def test_run_writes_config_metrics_checkpoint_and_curve(tmp_path):
    summary = pretrain(_cfg(tmp_path, "run.max_steps=3", "train.checkpoint_every=2"))
    assert summary["steps"] == 3
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "loss.png", "summary.json"):
        assert (tmp_path / name).exists(), name
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for key in ("loss", "loss_dino", "lr", "teacher_temp", "momentum", "imgs_per_s", "teacher_entropy",
                "teacher_kl_uniform"):
        assert key in records[-1]
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 3
    assert set(state) >= {"student", "teacher", "optimizer", "objectives", "rng", "config"}
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = _cfg(tmp_path, "optim.lr=1e30", "optim.warmup_epochs=0", "optim.clip_grad=0",
               "optim.freeze_last_layer=0", "train.checkpoint_every=1")
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step") as err:
        pretrain(cfg)
    assert "last good checkpoint" in str(err.value)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == err.value.step  # the checkpoint of the last finite step, still readable
    assert all(torch.isfinite(v).all() for v in state["teacher"].values())


def test_resume_refuses_a_changed_recipe(tmp_path):
    pretrain(_cfg(tmp_path, "run.max_steps=1"))
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        pretrain(_cfg(tmp_path, "run.max_steps=2", "optim.lr=0.1"))


def test_finished_run_resumes_to_its_end_without_training(tmp_path):
    pretrain(_cfg(tmp_path, "run.max_steps=2"))
    first = load_checkpoint(tmp_path / "checkpoint.pt")["teacher"]
    summary = pretrain(_cfg(tmp_path, "run.max_steps=2"))
    assert summary["steps"] == 2
    second = load_checkpoint(tmp_path / "checkpoint.pt")["teacher"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_knn_during_training_is_logged(tmp_path, monkeypatch):
    from geodino.engine.pretrain import Pretrainer

    checks = []
    evaluate = Pretrainer.evaluate_knn
    monkeypatch.setattr(Pretrainer, "evaluate_knn", lambda self: checks.append(self.step) or evaluate(self))
    summary = pretrain(_cfg(tmp_path, "run.max_steps=2", "eval.knn=true", "eval.knn_every=1",
                            "data.eval_train_samples=16", "data.eval_val_samples=8"))
    assert checks == [0, 1, 2]  # the end of the run reuses the check of its last step
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "knn_top1" in r] == [0, 1, 2]  # the random teacher first
    knn = json.loads((tmp_path / "knn.json").read_text())
    last = next(r for r in records if r["step"] == 2 and "knn_top1" in r)
    assert knn["trained_teacher"]["top1"] == last["knn_top1"]
    assert set(knn) == {"metric", "random_teacher", "trained_teacher", "gain", "top1_gain"}
    assert knn["metric"] == "top1" and knn["gain"] == knn["top1_gain"]
    assert knn["trained_teacher"]["num_val"] == 8 and summary["knn"]["top1_gain"] == knn["top1_gain"]
