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
