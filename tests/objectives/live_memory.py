"""Peak memory of the tensors an operation makes, counted from the tensors themselves.

Every storage an op returns inside :func:`peak_tables` is counted from its first appearance until
PyTorch frees it (a finalizer on the storage's Python object, which PyTorch keeps alive as long as
the storage lives: in a graph, a view or a saved tensor). Independent of the allocator, unlike
resident memory: the engine tells glibc to keep freed memory for speed, and a test after it
would see no memory leave."""

import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def peak_tables(run: Callable[[], object], table_bytes: int) -> float:
    """The most bytes of storages made by ``run``'s ops alive at once, in tables of ``table_bytes``."""
    live: dict[int, int] = {}
    now = [0, 0]  # bytes alive, peak

    def freed(key: int) -> None:
        now[0] -= live.pop(key, 0)

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen((args, kwargs), made=False)  # storages from before (inputs, parameters): not counted
            out = func(*args, **(kwargs or {}))
            seen(out, made=True)
            now[1] = max(now)
            return out

    def seen(tree: object, made: bool) -> None:
        for t in tree_leaves(tree):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                if id(storage) not in live:
                    live[id(storage)] = storage.nbytes() if made else 0
                    now[0] += live[id(storage)]
                    weakref.finalize(storage, freed, id(storage))

    with Count():
        run()
    return now[1] / table_bytes
