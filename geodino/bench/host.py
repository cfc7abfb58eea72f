"""``geodino bench host``: what the host spends on a training step when the model costs nothing.

A GPU step is only as fast as the host can queue it. This bench takes a model whose compute is
negligible (a 1-block ViT-Tiny on 32-px global and 16-px local crops of 16-px patches: a handful of
tokens) and times the whole step the engine runs, multi-crop augmentation of raw images included,
on the CPU, for each objective and per-step batch. What is left is host work: parameter draws,
Python, op dispatch. It also counts the aten ops one step dispatches (PyTorch's profiler; on a GPU
each is a kernel launch or a copy), which does not depend on the machine.

Flat in the batch and few ops is the goal (issue 14): host work that grows with the batch, or
with the number of parameters, is time a GPU waits.

The module also runs as a script against another checkout of geodino
(``PYTHONPATH=/old/checkout python geodino/bench/host.py``), which is how the figures before a
change are measured: it only uses the engine's long-standing entry points.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

TINY_MODEL = ("model.arch=vit_tiny_patch16_224", "model.depth=1", "model.patch_size=16", "model.out_dim=256",
              "model.hidden_dim=64", "model.bottleneck_dim=32", "objective.patch_out_dim=256",
              "objective.patch_hidden_dim=64", "objective.patch_bottleneck_dim=32", "augment.global_size=32",
              "augment.local_size=16", "augment.n_local=4", "data.image_size=32", "train.precision=no",
              "optim.epochs=1", "optim.warmup_epochs=0", "optim.freeze_last_layer=0", "model.drop_path_rate=0")


def _cpu_model() -> str:
    try:
        from geodino.utils import cpu_model
    except ImportError:  # an older checkout keeps it in geodino.bench
        from geodino.bench import cpu_model
    return cpu_model()


def _step_fn(objective: str, images: int):
    """``step(k)``: augmentation of a fixed raw batch, then one update, as the engine runs them."""
    from geodino.augment import MultiCropAugment
    from geodino.config import load_config
    from geodino.data.synthetic import synthetic_card
    from geodino.engine.pretrain import DINOStep, augment_kwargs, make_accelerator

    patch = {"dino": "none"}.get(objective, objective)
    cfg = load_config(None, [*TINY_MODEL, f"objective.patch={patch}", f"data.batch_size={images}"])
    card = synthetic_card()
    acc = make_accelerator(cfg.train.precision)
    core = DINOStep(cfg, card.num_bands, 10_000, acc)
    augment = MultiCropAugment.from_card(card, **augment_kwargs(cfg))
    raw = torch.rand(images, card.num_bands, 32, 32, generator=torch.Generator().manual_seed(0)) * 2000

    import inspect

    if "generator" in inspect.signature(augment.__call__).parameters:  # checkouts before counter-based draws
        def step(k: int) -> None:
            core(augment(raw, torch.Generator().manual_seed(k), offset=0, total=images), k, False)
    else:
        def step(k: int) -> None:
            core(augment(raw, k), k, False)

    return step


def count_ops(step, k: int) -> int:
    """aten ops one call of ``step`` dispatches from Python (nested ones not counted twice)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(k)
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)


def measure(objective: str, images: int, steps: int = 10, warmup: int = 3) -> dict[str, Any]:
    step = _step_fn(objective, images)
    for k in range(warmup):
        step(k)
    times = []
    for k in range(warmup, warmup + steps):
        started = time.perf_counter()
        step(k)
        times.append(time.perf_counter() - started)
    return {"objective": objective, "images": images, "ms_per_step": round(1000 * statistics.median(times), 2),
            "ops_per_step": count_ops(step, warmup + steps)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objectives", default="dino,selfpatch,masked", help="comma-separated (default: all three)")
    parser.add_argument("--images", default="64,1024", help="images per step, comma-separated (default 64,1024)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting (median; default 10)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    previous = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        rows = [measure(o, int(n), args.steps) for o in args.objectives.split(",") for n in args.images.split(",")]
    finally:  # a library call must not leave the process on another thread count
        torch.set_num_threads(previous)
    line = {"bench": "host", "cpu": _cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "rows": rows}
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args())
