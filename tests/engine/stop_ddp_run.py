"""Helper for test_stop: two gloo ranks agree on a stop that only one of them was asked for.

Rank 1 receives SIGUSR1 just before its step 2; every step both ranks do an all-reduce (as DDP's
gradients do) and ask ``StopRequests.agreed()``. Prints, from rank 0, one JSON line: what each
rank's ``agreed()`` said at each of 5 steps.

    python stop_ddp_run.py STORE_FILE
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank: int, store: str) -> None:
    from geodino.runs.stop import StopRequests

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    seen = []
    with StopRequests(2, "cpu") as stops:
        for step in range(5):
            if rank == 1 and step == 2:
                os.kill(os.getpid(), signal.SIGUSR1)
            dist.all_reduce(torch.ones(1))
            seen.append(stops.agreed())
    everything = [None] * 2
    dist.all_gather_object(everything, seen)
    if rank == 0:
        print(json.dumps(everything), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    # fork: this fresh interpreter has run nothing yet, and forked ranks skip re-importing torch
    mp.start_processes(worker, args=(sys.argv[1],), nprocs=2, join=True, start_method="fork")
