"""A run killed mid-way and resumed ends with the same teacher as an uninterrupted run."""

import pytest
import torch

from geodino.runs.checkpoint import load_checkpoint
from tests.engine.runs import assert_same_weights, kill_run_at, losses, run_pretrain, teacher


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path):
    overrides = ("train.checkpoint_every=2", "data.num_samples=96")  # 12 steps
    run_pretrain(tmp_path / "straight", *overrides)

    killed = tmp_path / "killed"
    step_at_kill = kill_run_at(killed, *overrides, when=lambda step: step >= 4)
    assert 4 <= step_at_kill < 12
    assert not (killed / "summary.json").exists()

    run_pretrain(killed, *overrides)  # resumes automatically from the output folder
    assert load_checkpoint(killed / "checkpoint.pt")["step"] == 12
    assert_same_weights(teacher(tmp_path / "straight"), teacher(killed), atol=1e-6)
    assert losses(killed) == pytest.approx(losses(tmp_path / "straight"), abs=1e-6)


def test_checkpoint_opens_with_weights_only(tmp_path):
    from geodino.runs.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "c.pt", {"step": 3, "w": torch.ones(2)})
    assert load_checkpoint(tmp_path / "c.pt")["step"] == 3
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
