"""Helper for test_shard_stream: two gloo ranks stream the same shards for two epochs.

Each step does an all_reduce, as DDP does; a rank running out of batches early would hang the
other one, so the test runs this script under a timeout. Prints one JSON line from rank 0.

    python stream_ddp_run.py SHARDS PORT STEPS
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank: int, world_size: int, shards: str, port: int, steps: int) -> None:
    from geodino.data.shards.stream import make_shard_loader

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=60))
    loader = make_shard_loader(shards, batch_size=2, num_workers=2, shuffle_buffer=4, rank=rank,
                               world_size=world_size, steps_per_epoch=steps)
    counts, keys = [], []
    for _ in range(2):
        n = 0
        for batch in loader:
            n += 1
            keys.append(batch["key"])
            step = torch.ones(1)
            dist.all_reduce(step)
        counts.append(n)
    everything = [None] * world_size
    dist.all_gather_object(everything, {"counts": counts, "keys": keys})
    if rank == 0:
        print(json.dumps(everything), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    shards, port, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # fork: this fresh interpreter has run nothing yet, and forked ranks (and their DataLoader
    # workers) skip re-importing torch, which takes seconds on a small machine.
    mp.start_processes(worker, args=(2, shards, port, steps), nprocs=2, join=True, start_method="fork")
