"""``geodino bench host``: what the host spends on a training step when the model costs nothing.

A GPU step is only as fast as the host can queue it. This bench takes a small model (a 1-block
ViT-Tiny on 32-px global and 16-px local crops of 16-px patches: a handful of tokens) and times the
whole step the engine runs, multi-crop augmentation of raw images included, on the CPU, for each
objective and per-step batch. On a CPU those times still hold the pixel work (the patch
embedding's convolutions, resampling), which grows with the batch; the host's share is what the
op counts measure. They come from PyTorch's profiler and do not depend on the machine: the ops
Python calls (``ops_per_step``); all of them, backward and optimiser included
(``all_ops_per_step``); and of those, the ones that do device work, i.e. not views or allocations
(``launches_per_step``: on a GPU, each is a kernel launch or a copy).

Flat in the batch and few ops is the goal (issue 14): host work that grows with the batch, or
with the number of parameters, is time a GPU waits. On a CPU the step's time is mostly the
pixel work itself, so the host-only part is also timed on its own: drawing one step's random
parameters (and block masks) for one process's rows of a global batch (``draws``).

The module also runs as a script against another checkout of geodino
(``PYTHONPATH=/old/checkout python geodino/bench/host.py``), which is how the figures before a
change are measured: it only uses the engine's long-standing entry points.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from geodino.utils import comma_list

# What a step is timed with: DINO alone, or with a patch objective (named here rather than read from
# the objective registry, so that the script also runs on checkouts from before the registry).
OBJECTIVES = ("dino", "selfpatch", "masked")
TINY_MODEL = ("model.arch=vit_tiny_patch16_224", "model.depth=1", "model.patch_size=16", "model.out_dim=256",
              "model.hidden_dim=64", "model.bottleneck_dim=32", "objective.patch_out_dim=256",
              "objective.patch_hidden_dim=64", "objective.patch_bottleneck_dim=32", "augment.global_size=32",
              "augment.local_size=16", "augment.n_local=4", "data.image_size=32", "train.precision=no",
              "optim.epochs=1", "optim.warmup_epochs=0", "optim.freeze_last_layer=0", "model.drop_path_rate=0")
# The same step with the layers of the recipes' ViT-S/16 (12 blocks, stochastic depth 0.1, 10 local
# crops) on the same tiny crops: its op counts are those of a real ViT-S/16 step (they do not depend
# on the crop size), its times are not.
VITS16_LAYERS = (*TINY_MODEL, "model.arch=vit_small_patch16_224", "model.depth=12", "model.drop_path_rate=0.1",
                 "augment.n_local=10")
MODELS = {"tiny": TINY_MODEL, "vits16": VITS16_LAYERS}


def _cpu_model() -> str:
    try:
        from geodino.utils import cpu_model
    except ImportError:  # an older checkout keeps it in geodino.bench
        from geodino.bench import cpu_model
    return cpu_model()


#: The data whose augmentation recipe a step runs: the embedded SAR-optical scenes (8 bands, the
#: multispectral ops) or ImageNet's card (RGB in [0, 1], the reference recipe's colour ops).
CARDS = ("synthetic", "imagenet")


def _card(name: str):
    if name == "imagenet":
        from geodino.data.card import DatasetCard

        return DatasetCard.load("imagenet"), 1.0
    from geodino.data.synthetic import synthetic_card

    return synthetic_card(), 2000.0  # raw values: reflectances up to 2000


def _step_fn(objective: str, images: int, model: str = "tiny", card: str = "synthetic"):
    """``step(k)``: augmentation of a fixed raw batch, then one update, as the engine runs them."""
    from geodino.augment import MultiCropAugment
    from geodino.config import load_config
    from geodino.engine.pretrain import DINOStep, augment_kwargs, make_accelerator

    patch = {"dino": "none"}.get(objective, objective)
    cfg = load_config(None, [*MODELS[model], f"objective.patch={patch}", f"data.batch_size={images}"])
    card, scale = _card(card)
    acc = make_accelerator(cfg.train.precision)
    core = DINOStep(cfg, card.num_bands, 10_000, acc)
    augment = MultiCropAugment.from_card(card, **augment_kwargs(cfg))
    raw = torch.rand(images, card.num_bands, 32, 32, generator=torch.Generator().manual_seed(0)) * scale

    import inspect

    if "generator" in inspect.signature(augment.__call__).parameters:  # checkouts before counter-based draws
        def step(k: int) -> None:
            core(augment(raw, torch.Generator().manual_seed(k), offset=0, total=images), k, False)
    else:
        def step(k: int) -> None:
            core(augment(raw, k), k, False)

        step.augment, step.raw = augment, raw  # for count_copies
    return step


class HostToDeviceCopies(TorchDispatchMode):
    """Counts the ops that take a CPU tensor and return one on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.copies = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(a, torch.Tensor) and a.device.type == "cpu" for a in args) and any(
                isinstance(o, torch.Tensor) and o.device.type == "meta" for o in (out if isinstance(out, (list, tuple)) else [out])):
            self.copies += 1
        return out


def count_copies(step, k: int) -> int | None:
    """Host-to-device copies in one augmentation call of ``step`` (after one that fills the
    caches), its batch on PyTorch's meta device: a device that computes nothing, so that every
    copy from the host shows, as it would on a GPU (on the CPU a copy to itself is no op). None
    for checkouts whose augmentation cannot say."""
    augment = getattr(step, "augment", None)
    if augment is None:
        return None
    raw = step.raw.to("meta")
    try:
        augment(raw, k)
        with HostToDeviceCopies() as mode:
            augment(raw, k + 1)
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel in that checkout
        return None
    return mode.copies


# Allocations launch no kernel; neither do views (checked from the op's schema, below).
_ALLOCATIONS = frozenset({"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided"})


@functools.lru_cache(maxsize=None)
def _launches_nothing(name: str) -> bool:
    """Whether the aten op ``name`` does no device work of its own: an allocation, or an op whose
    schema says it returns a view of its input (``t``, ``reshape``, ``to``, ``detach``, ``split``,
    ...). Composite ones that may copy (``reshape``, ``to``, ``contiguous``) are judged by their
    children (see :func:`_launches`)."""
    if name in _ALLOCATIONS:
        return True
    packet = getattr(torch.ops.aten, name, None)
    if packet is None:
        return False
    returns = [r for overload in packet.overloads() for r in getattr(packet, overload)._schema.returns
               if "Tensor" in str(r.type)]  # slice.str and its like slice strings, not tensors
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


def _launches(event) -> bool:
    name = event.name.removeprefix("aten::")
    return not _launches_nothing(name) or any(child.name.startswith("aten::") and _launches(child)
                                              for child in event.cpu_children)


def count_ops(step, k: int) -> tuple[int, int, int]:
    """aten ops one call of ``step`` dispatches: ``(from Python, all, launching)``.

    From Python: those called by Python code directly (the count every figure since session 7
    uses). All: every aten op not nested in another one, wherever it is called from, so also the
    backward pass, the optimiser and the inside of custom autograd functions (the DINO head's
    prototype layer, oneDNN linears). Launching: those of "all" that do device work, i.e. not
    views or allocations, nor made only of them: on a GPU, each is a kernel launch or a copy (a
    ``linear`` counts once, its matmul; a ``_foreach_`` op once, although CUDA may split it into a
    few launches).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(k)
    from_python = every = launching = 0
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        from_python += event.cpu_parent is None
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            every += 1
            launching += _launches(event)
    return from_python, every, launching


def measure(objective: str, images: int, steps: int = 10, warmup: int = 3, model: str = "tiny",
            card: str = "synthetic") -> dict[str, Any]:
    step = _step_fn(objective, images, model, card)
    for k in range(warmup):
        step(k)
    times = []
    for k in range(warmup, warmup + steps):
        started = time.perf_counter()
        step(k)
        times.append(time.perf_counter() - started)
    from_python, every, launching = count_ops(step, warmup + steps)
    return {"objective": objective, "model": model, "card": card, "images": images, "ms_per_step": round(1000 * statistics.median(times), 2),
            "ops_per_step": from_python, "all_ops_per_step": every, "launches_per_step": launching,
            "augment_host_to_device_copies": count_copies(step, warmup + steps + 1)}


def draw_ms(images: int, total: int, masks: bool, repeats: int = 5) -> float:
    """Milliseconds the host spends drawing one step's random parameters (crops and intensity ops
    of 2 global + 4 local views, modality drops, and with ``masks`` block masks on a 14 x 14 grid,
    ViT-S/16 at 224 px) for one process holding ``images`` rows of a ``total`` global batch. Before
    counter-based draws every process drew the whole global batch; this runs either code."""
    import inspect

    from geodino.augment import MultiCropAugment
    from geodino.augment.modality import sample_modality_drop
    from geodino.augment.params import sample_group_params
    from geodino.data.synthetic import synthetic_card
    from geodino.objectives.masking import sample_block_masks

    aug = MultiCropAugment.from_card(synthetic_card(), n_local=4, modality_drop_p=0.5)
    legacy = "generator" in inspect.signature(sample_group_params).parameters
    height = width = 120

    def once(k: int) -> None:
        if legacy:
            g = torch.Generator().manual_seed(k)
            sample_group_params(aug.global_recipes, total, height, width, generator=g)
            sample_group_params([aug.local_recipe] * 4, total, height, width, generator=g)
            sample_modality_drop((6, total), 2, 0.5, generator=g)
            if masks:
                sample_block_masks(2, (14, 14), torch.Generator().manual_seed(k), total, 0, images)
            return
        from geodino.rng import RowRandom

        rng = RowRandom(k, 0, images)
        sample_group_params(aug.global_recipes, rng, height, width)
        sample_group_params([aug.local_recipe] * 4, rng, height, width)
        sample_modality_drop(rng, 6, 2, 0.5)
        if masks:
            sample_block_masks(2, (14, 14), RowRandom(k + 1, 0, images))

    once(0)
    times = []
    for k in range(1, repeats + 1):
        started = time.perf_counter()
        once(k)
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 2)


DRAW_SHAPES = ((64, 64), (1024, 1024), (64, 1024))  # (rows of this process, global batch)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objectives", default=",".join(OBJECTIVES), help="comma-separated (default: all three)")
    parser.add_argument("--images", default="64,1024", help="images per step, comma-separated (default 64,1024)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting (median; default 10)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--model", default="tiny", choices=sorted(MODELS),
                        help="tiny: a 1-block ViT-Tiny (default); vits16: the layers of a ViT-S/16 on the same "
                             "tiny crops, for its op counts")
    parser.add_argument("--card", default="synthetic", choices=CARDS,
                        help="synthetic: the embedded 8-band scenes, multispectral ops (default); imagenet: RGB, "
                             "the reference recipe's colour ops")


def run(args: argparse.Namespace) -> dict[str, Any]:
    previous = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        threads = torch.get_num_threads()
        model = getattr(args, "model", "tiny")
        card = getattr(args, "card", "synthetic")
        objectives = comma_list(args.objectives, "--objectives")
        unknown = [o for o in objectives if o not in OBJECTIVES]
        if unknown:
            raise ValueError(f"--objectives: unknown {', '.join(unknown)}; choose from {', '.join(OBJECTIVES)}")
        images = comma_list(args.images, "--images", int)
        if min(images) < 1:
            raise ValueError(f"--images {args.images!r}: images per step must be >= 1")
        rows = [measure(o, n, args.steps, model=model, card=card) for o in objectives for n in images]
        draws = [{"images": n, "global_batch": total, "draw_ms": draw_ms(n, total, masks=False),
                  "draw_and_mask_ms": draw_ms(n, total, masks=True)} for n, total in DRAW_SHAPES]
    finally:  # a library call must not leave the process on another thread count
        torch.set_num_threads(previous)
    line = {"bench": "host", "cpu": _cpu_model(), "threads": threads, "torch": torch.__version__,
            "rows": rows, "draws": draws}
    print(json.dumps(line), flush=True)
    return line


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args())
