"""Batches onto the GPU one step ahead, on a side stream.

Without this the copy of batch ``i + 1`` (and the assembly of its bands: dtype casts, resizing)
is queued on the compute stream behind step ``i + 1``'s own start, so the GPU does nothing while
the bytes cross PCIe. Here it is issued on a second CUDA stream as soon as step ``i`` has been
queued, and the compute stream waits for it only when it needs that batch. Elsewhere (CPU, MPS)
the batches are moved when they are needed, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch


def batches_on_device(batches: Iterable[Any], move: Callable[[Any, torch.device], torch.Tensor],
                      device: torch.device | str) -> Iterator[torch.Tensor]:
    """``move(batch, device)`` of each batch, in order; on CUDA the next one is moved on a side
    stream while the caller works on the current one."""
    device = torch.device(device)
    if device.type != "cuda":
        for batch in batches:
            yield move(batch, device)
        return
    side = torch.cuda.Stream(device=device)
    compute = torch.cuda.current_stream(device)

    def issue(batch: Any) -> torch.Tensor:
        side.wait_stream(compute)  # memory freed by the compute stream may be reused here
        with torch.cuda.stream(side):
            return move(batch, device)

    iterator = iter(batches)
    try:
        ahead = issue(next(iterator))
    except StopIteration:
        return
    while True:
        compute.wait_stream(side)
        # The allocator must not hand this memory to the side stream while the compute stream uses it.
        ahead.record_stream(compute)
        current = ahead
        try:
            ahead = issue(next(iterator))
        except StopIteration:
            yield current
            return
        yield current
