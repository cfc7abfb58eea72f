"""Map-style pretraining data: one loader for the run, its workers persist across epochs, and every
epoch still gets its own order from the seed (issue 14)."""

import os
from types import SimpleNamespace

import torch
from torch.utils.data import Dataset

from geodino.data.batches import EpochBatches, map_style_pretrain_data
from geodino.data.synthetic import synthetic_card


class WhoLoads(Dataset):
    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int) -> dict:
        return {"index": i, "pid": os.getpid()}


def test_workers_persist_across_epochs_and_each_epoch_keeps_its_order():
    cfg = SimpleNamespace(data=SimpleNamespace(batch_size=4, num_workers=2, bad_samples="error", max_bad_fraction=0.0),
                          run=SimpleNamespace(seed=3, out_dir="unused"))
    data = map_style_pretrain_data(WhoLoads(), synthetic_card(), cfg, rank=0, world=1)
    pids, orders = [], []
    for epoch in (0, 1):
        batches = list(data.batches(epoch, 0))
        pids.append({int(p) for b in batches for p in b["pid"]})
        orders.append([int(i) for b in batches for i in b["index"]])
    assert pids[0] == pids[1] and os.getpid() not in pids[0]  # the same two worker processes
    for epoch, order in enumerate(orders):
        expected = [i for batch in EpochBatches(24, 4, 0, 1, 3, epoch) for i in batch]
        assert order == expected
    assert orders[0] != orders[1]
    resumed = [int(i) for b in data.batches(1, 2) for i in b["index"]]  # mid-epoch, as a resume asks
    assert resumed == orders[1][8:]
    assert torch.tensor(resumed).unique().numel() == len(resumed)
