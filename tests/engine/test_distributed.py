"""A 2-process CPU run (torchrun, gloo) equals a 1-process run with the same global batch."""

import pytest

from tests.engine.runs import assert_same_weights, losses, run_pretrain, teacher


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    # Stochastic depth draws per process, so it is off here; everything else is the full step.
    common = ("model.drop_path_rate=0", "train.checkpoint_every=100")
    run_pretrain(tmp_path / "one", "data.batch_size=16", *common)
    run_pretrain(tmp_path / "two", "data.batch_size=8", *common, nproc=2)
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 8  # 64 samples / 16 per step × 2 epochs
    for a, b in zip(one, two):
        assert abs(a - b) < 1e-4, (one, two)
    assert_same_weights(teacher(tmp_path / "one"), teacher(tmp_path / "two"), atol=1e-5)
