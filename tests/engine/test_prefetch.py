"""Batches moved to the device one step ahead: same batches, same order, on every device."""

from __future__ import annotations

import pytest
import torch

from geodino.engine.prefetch import batches_on_device


def _batches(n: int):
    return [{"image": torch.full((2, 3, 4, 4), float(i)).pin_memory() if torch.cuda.is_available()
             else torch.full((2, 3, 4, 4), float(i))} for i in range(n)]


def test_cpu_moves_each_batch_when_it_is_needed() -> None:
    moved = []

    def move(batch, device):
        moved.append(int(batch["image"][0, 0, 0, 0]))
        return batch["image"].to(device)

    out = batches_on_device(_batches(3), move, "cpu")
    assert moved == []  # a generator: nothing before the first request
    first = next(out)
    assert moved == [0] and float(first[0, 0, 0, 0]) == 0.0
    assert [int(x[0, 0, 0, 0]) for x in out] == [1, 2] and moved == [0, 1, 2]
    assert list(batches_on_device([], move, "cpu")) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_side_stream_gives_the_same_batches_in_order() -> None:
    def move(batch, device):
        return batch["image"].to(device, non_blocking=True) * 2

    out = [x.clone() for x in batches_on_device(_batches(5), move, "cuda")]
    torch.cuda.synchronize()
    assert [int(x[0, 0, 0, 0]) for x in out] == [0, 2, 4, 6, 8] and all(x.is_cuda for x in out)


def test_work_ahead_gives_what_building_now_gives_and_is_used() -> None:
    from geodino.engine.prefetch import Ahead

    calls = []

    def build(step):
        calls.append(step)
        return [step * 10]

    ahead = Ahead()
    assert ahead.take(3, "k", build) == [30]  # built now; step 4 starts on the helper thread
    assert ahead.take(4, "k", build) == [40] and ahead.hits == 1
    assert ahead.take(9, "k", build) == [90] and ahead.hits == 1  # a jump (resume): built now
    assert ahead.take(10, "other", build) == [100] and ahead.hits == 1  # another key: not reused
    ahead.take(11, "other", build)
    assert ahead.hits == 2 and {3, 4, 5, 9, 10, 11} <= set(calls)  # 5 and 10 built ahead, unused


def test_masked_pretraining_uses_masks_built_ahead_and_stays_exact(tmp_path) -> None:
    # The same run with and without the helper thread: bit for bit the same teacher.
    from geodino.config import load_config
    from geodino.engine import pretrain as engine
    from tests.engine.runs import TINY

    overrides = [*TINY, "objective.patch=masked", "run.max_steps=3", "model.drop_path_rate=0"]
    engine.pretrain(load_config(None, [*overrides, f"run.out_dir={tmp_path / 'a'}"]))

    class Now(engine.Ahead):
        def take(self, step, key, build):
            return build(step)

    original = engine.Ahead
    engine.Ahead = Now
    try:
        engine.pretrain(load_config(None, [*overrides, f"run.out_dir={tmp_path / 'b'}"]))
    finally:
        engine.Ahead = original
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["teacher"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["teacher"]
    assert all(torch.equal(a[k], b[k]) for k in a)
