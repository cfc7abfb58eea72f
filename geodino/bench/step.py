"""``geodino bench step``: images/s, seconds per step and peak memory of the DINO training step.

The step runs on random crops (no data pipeline), with geodino's step and with the reference-style
baseline (:mod:`geodino.bench.reference_step`), each in its own process so that peak memory is
measured separately. ``--rounds`` alternates the two processes (geodino, baseline, geodino, ...)
and reports the median of each, so that a machine whose speed drifts during the run (shared
cores) slows both alike. Prints one JSON line with both and their ratio.

With ``--objective selfpatch|masked`` the baseline is geodino's image-level step instead: both
steps are built in one process and timed alternately, step by step, so that a machine whose load
changes during the run slows both alike; ``step_time_ratio`` (median patch step / median image
step) is the price of the patch objective.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from typing import Any

import torch

from geodino.config.schema import number
from geodino.speedups.onednn_linear import OneDNNLinear
from geodino.utils import cpu_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default="vit_tiny_patch16_224", help="timm model name")
    p.add_argument("--patch-size", type=number(int, ge=0), default=0, help="0 = the arch's own")
    p.add_argument("--depth", type=number(int, ge=0), default=0, help="ViT blocks (0 = the arch's own)")
    p.add_argument("--in-chans", type=number(int, ge=1), default=3)
    p.add_argument("--batch-size", type=number(int, ge=1), default=8, help="images per step")
    p.add_argument("--global-size", type=number(int, ge=1), default=224)
    p.add_argument("--local-size", type=number(int, ge=1), default=96)
    p.add_argument("--local-crops", type=number(int, ge=0), default=8)
    p.add_argument("--out-dim", type=number(int, ge=2), default=65536)
    p.add_argument("--steps", type=number(int, ge=1), default=5, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=number(int, ge=0), default=2)
    p.add_argument("--precision", choices=["no", "bf16", "fp16"], default="no")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    p.add_argument("--objective", choices=["dino", "selfpatch", "masked"], default="dino",
                   help="dino (image level only), or a patch objective timed against dino alone")
    p.add_argument("--patch-hidden-dim", type=number(int, ge=0), default=0, help="patch head MLP width (0 = the schema's)")
    p.add_argument("--count-flops", action="store_true",
                   help="with --objective: also count the matmul FLOPs of one step of each (machine-independent)")
    p.add_argument("--baseline", choices=["reference", "none"],
                   help="also time the reference-style step in the same run (default reference; fp32, "
                        "--objective dino only)")
    p.add_argument("--threads", type=number(int, ge=0), default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--rounds", type=number(int, ge=1),
                   help="alternating geodino/baseline processes; the medians are reported (default 3; "
                        "--objective dino only)")


# The recipe keys _config sets from options: an error of the network's checks names the option.
OPTION_OF_KEY = {"augment.global_size": "--global-size", "augment.local_size": "--local-size",
                 "augment.n_local": "--local-crops", "model.patch_size": "--patch-size", "model.depth": "--depth",
                 "model.arch": "--arch", "model.out_dim": "--out-dim", "data.batch_size": "--batch-size",
                 "objective.patch_hidden_dim": "--patch-hidden-dim", "train.precision": "--precision"}


def check_options(args: argparse.Namespace) -> None:
    """Options that the chosen comparison would not read are refused; the defaults of the others are
    filled in (``--baseline`` and ``--rounds`` are for ``--objective dino``, the patch options for
    the others)."""
    if args.objective == "dino":
        for option, value in (("--count-flops", args.count_flops), ("--patch-hidden-dim", args.patch_hidden_dim)):
            if value:
                raise ValueError(f"{option} is for a patch objective timed against dino alone: "
                                 "give --objective selfpatch or masked")
        args.baseline = args.baseline or "reference"
        args.rounds = args.rounds or 3
        return
    for option, value in (("--baseline", args.baseline), ("--rounds", args.rounds)):
        if value is not None:
            raise ValueError(f"{option} is for --objective dino: a patch objective is timed against dino alone, "
                             "both in one process")


def _config(args: argparse.Namespace):
    from geodino.config.schema import Config

    cfg = Config()
    cfg.model.arch, cfg.model.patch_size, cfg.model.out_dim = args.arch, args.patch_size, args.out_dim
    cfg.model.depth = args.depth
    cfg.data.batch_size = args.batch_size
    cfg.augment.global_size, cfg.augment.local_size = args.global_size, args.local_size
    cfg.augment.n_local = args.local_crops
    cfg.train.precision, cfg.train.compile = args.precision, args.compile
    cfg.optim.epochs, cfg.optim.warmup_epochs = 1, 0
    cfg.optim.freeze_last_layer = 0  # time the full update, prototype layer included
    cfg.objective.patch = {"dino": "none"}.get(args.objective, args.objective)
    if args.patch_hidden_dim:
        cfg.objective.patch_hidden_dim = args.patch_hidden_dim
    return cfg


def _random_views(args: argparse.Namespace, device: torch.device):
    from geodino.augment import Views

    g = torch.Generator().manual_seed(0)
    def crop(size):
        return torch.randn(args.batch_size, args.in_chans, size, size, generator=g).to(device)
    globals_ = [crop(args.global_size) for _ in range(2)]
    return Views(teacher=globals_, student=globals_ + [crop(args.local_size) for _ in range(args.local_crops)])


def _measure(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = _config(args)
    total = args.warmup + args.steps
    if kind == "geodino":
        from geodino.engine.pretrain import DINOStep, make_accelerator

        acc = make_accelerator(args.precision)
        step_fn, device = DINOStep(cfg, args.in_chans, total, acc), acc.device
        # the linear path this machine's probe chose (speedups.onednn_linear): 0 = PyTorch's
        extra = {"onednn_linears": sum(isinstance(m, OneDNNLinear) for m in step_fn.student.modules())}
    else:
        from geodino.bench.reference_step import ReferenceStyleStep

        step_fn, device = ReferenceStyleStep(cfg, args.in_chans, total), torch.device("cpu")
        extra = {}
    views = _random_views(args, device)
    cuda = device.type == "cuda"
    for step in range(args.warmup):
        step_fn(views, step)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for step in range(args.warmup, total):
        step_fn(views, step)
    if cuda:
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - start) / args.steps
    peak = (torch.cuda.max_memory_allocated() / 2**20) if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"imgs_per_s": args.batch_size / step_s, "step_s": step_s, "peak_mem_mb": round(peak, 1),
            "device": device.type, **extra}


def _measure_pair(args: argparse.Namespace) -> dict[str, Any]:
    """The image-only step and the step with ``args.objective``, interleaved, in this process."""
    from geodino.engine.pretrain import DINOStep, make_accelerator

    if args.threads:
        torch.set_num_threads(args.threads)
    total = args.warmup + args.steps
    acc = make_accelerator(args.precision)
    steps = {"image_only": DINOStep(_config(argparse.Namespace(**{**vars(args), "objective": "dino"})),
                                    args.in_chans, total, acc),
             "with_patch": DINOStep(_config(args), args.in_chans, total, acc)}
    views = _random_views(args, acc.device)
    cuda = acc.device.type == "cuda"
    times: dict[str, list[float]] = {name: [] for name in steps}
    peaks: dict[str, float] = {name: 0.0 for name in steps}
    for step in range(total):
        for name, step_fn in steps.items():
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            step_fn(views, step)
            if cuda:
                torch.cuda.synchronize()
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated() / 2**20)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - start)
    out: dict[str, Any] = {"device": acc.device.type}
    for name, values in times.items():
        step_s = statistics.median(values)
        out[name] = {"imgs_per_s": args.batch_size / step_s, "step_s": step_s}
        if cuda:
            out[name]["peak_mem_mb"] = round(peaks[name], 1)
    if not cuda:  # one process holds both: only the joint peak is known
        out["peak_mem_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["step_time_ratio"] = round(out["with_patch"]["step_s"] / out["image_only"]["step_s"], 3)
    if args.count_flops:
        from torch.utils.flop_counter import FlopCounterMode

        for name, step_fn in steps.items():
            with FlopCounterMode(display=False) as counter:
                step_fn(views, total - 1)
            out[name]["gflop"] = round(counter.get_total_flops() / 1e9, 1)
        out["flop_ratio"] = round(out["with_patch"]["gflop"] / out["image_only"]["gflop"], 3)
    return out


def _in_subprocess(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    # Only plain values cross to the spawned process (the CLI's ``func`` is a closure).
    plain = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "func"})
    with mp.get_context("spawn").Pool(1) as pool:
        if kind == "pair":
            return pool.apply(_measure_pair, (plain,))
        return pool.apply(_measure, (kind, plain))


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median images/s, and every round's rate."""
    ordered = sorted(runs, key=lambda r: r["imgs_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "imgs_per_s_rounds": [round(r["imgs_per_s"], 3) for r in runs]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_options(args)
    try:
        return _run(args)
    except ValueError as err:  # the network's own checks name recipe keys; here they are options
        message = str(err)
        for key, option in OPTION_OF_KEY.items():
            message = message.replace(key, option)
        raise ValueError(message) from None


def _run(args: argparse.Namespace) -> dict[str, Any]:
    # Every CPU figure names its CPU (issue 14): the same step is faster or slower by machine.
    result: dict[str, Any] = {"bench": "step", "cpu": cpu_model(), "torch": torch.__version__,
                              **{k: v for k, v in vars(args).items() if k != "func"}}
    if args.objective != "dino":
        result.update(_in_subprocess("pair", args))
        print(json.dumps(result))
        return result
    with_baseline = args.baseline == "reference" and args.precision == "no"
    ours_runs, ref_runs = [], []
    for _ in range(max(1, args.rounds)):
        ours_runs.append(_in_subprocess("geodino", args))
        if with_baseline and ours_runs[-1]["device"] == "cpu":
            ref_runs.append(_in_subprocess("reference", args))
    result.update(_median_run(ours_runs))
    if ref_runs:
        result["baseline"] = {"kind": "reference-style step", **_median_run(ref_runs)}
        result["speedup_vs_baseline"] = round(result["imgs_per_s"] / result["baseline"]["imgs_per_s"], 3)
        result["speedup_per_round"] = [round(o["imgs_per_s"] / r["imgs_per_s"], 3)
                                       for o, r in zip(ours_runs, ref_runs)]
    elif args.baseline == "reference":
        result["baseline"] = "skipped: the reference-style baseline runs fp32 on the CPU only"
    print(json.dumps(result))
    return result
