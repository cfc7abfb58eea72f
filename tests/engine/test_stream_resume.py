"""A run on streamed shards killed mid-epoch and resumed ends with the same teacher as an
uninterrupted run: the shard order, each worker's sample order and the position in the epoch are
a pure function of (seed, epoch, rank, worker, step)."""

import pytest

from geodino.runs.checkpoint import load_checkpoint
from tests.engine.runs import assert_same_weights, kill_run_at, losses, run_pretrain, teacher


@pytest.mark.slow
def test_killed_mid_epoch_on_shards_resumes_to_the_same_teacher(tmp_path):
    from geodino.data.sources.synthetic_shards import write_synthetic_shards

    shards = tmp_path / "shards"
    write_synthetic_shards(shards, num_samples=96, val_samples=8, image_size=32, shard_size=12, progress=False)
    # 96 samples / 16 = 6 steps per epoch, 2 epochs; 2 workers with their own shards and a buffer
    # that carries samples across shard boundaries; the kill lands inside an epoch.
    overrides = ("data.source=shards", f"data.root={shards}", "data.num_workers=2", "data.shuffle_buffer=20",
                 "train.checkpoint_every=2")
    run_pretrain(tmp_path / "straight", *overrides)

    killed = tmp_path / "killed"
    step_at_kill = kill_run_at(killed, *overrides, when=lambda step: step in (2, 4, 8, 10))
    assert step_at_kill % 6 != 0, "killed at an epoch boundary: the test would not cover a mid-epoch resume"

    run_pretrain(killed, *overrides)
    assert load_checkpoint(killed / "checkpoint.pt")["step"] == 12
    assert losses(killed) == pytest.approx(losses(tmp_path / "straight"), abs=1e-6)
    assert_same_weights(teacher(tmp_path / "straight"), teacher(killed), atol=1e-6)
