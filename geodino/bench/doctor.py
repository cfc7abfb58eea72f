"""``geodino doctor``: is this machine ready to pretrain? One JSON line per check.

A new machine can fail a run in many quiet ways: a library missing or of the wrong version, a
precision that gives NaN, a resume that does not continue where it stopped, a launcher that cannot
form a process group, a step that waits on the host, a GPU far below what it should deliver. Each
check here tries one of them with the engine's own code (the training step, ``pretrain``, the
augmentation, the shard loader, ``torchrun``), so that a pass means the real thing works, and
prints one line: ``{"check": NAME, "ok": ..., ...}``. A check that fails prints ``"ok": false``
and a one-line ``"error"``, and the next check runs all the same.

Without a CUDA GPU the checks run a reduced form: a 1-block ViT-Tiny on 32-px crops, enough to
exercise every code path in well under a minute. With one, they train ViT-S/16 on the reference
DINO crops (2 x 224 + 10 x 96, 65536 prototypes), and report what the GPU delivers beside the
targets for an H200. ``ok`` says whether a check's code path works, not whether a target was met,
so that a smaller GPU passes with lower figures.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from geodino.utils import comma_list, cpu_model, torch_threads, write_json_atomic

IN_CHANS = 3  # bands of the random views (the model's cost barely depends on it)
OBJECTIVES = {"dino": "none", "selfpatch": "selfpatch", "masked": "masked"}  # name -> objective.patch
PACKAGES = ("torchvision", "timm", "accelerate", "webdataset", "rasterio")

# A tiny but complete recipe (the engine's tests run it too, through tests/engine/runs.py): a
# 2-block ViT on 32-px synthetic scenes, 64 samples at 16 a step for 2 epochs, i.e. 8 steps.
TINY = (
    "model.arch=vit_tiny_patch16_224", "model.depth=2", "model.patch_size=8",
    "model.out_dim=256", "model.hidden_dim=64", "model.bottleneck_dim=32",
    "data.image_size=32", "data.num_samples=64", "data.batch_size=16", "augment.global_size=32",
    "augment.local_size=16", "augment.n_local=2", "optim.epochs=2", "optim.warmup_epochs=1",
    "optim.lr=0.005", "train.log_every=1", "train.progress=false", "eval.knn=false",
)
# Resume: a checkpoint every 2 of the 8 steps; no stochastic depth, whose draws would make the
# straight run and the resumed one differ for another reason than a faulty resume.
RESUME = (*TINY, "train.checkpoint_every=2", "model.drop_path_rate=0", "data.num_samples=64")
RESUME_STOP = 4
RESUME_STEPS = 8
RESUME_ATOL = 1e-5
# A one-process run of a tiny model: on a GPU it ends in well under a minute unless NCCL hangs,
# and a hang must not take the time the other checks need (the CPU form shares 2 slow cores).
TORCHRUN_TIMEOUT_S = {"cpu": 300, "gpu": 120}
# bf16 keeps 8 bits of mantissa: the losses agree to a few parts in a thousand (the CPU form's
# loss ~5.5 differed by 0.009 over 5 steps); relative, since the GPU form's loss (K = 65536) is twice
# the CPU form's
PRECISION_RTOL = 0.01
AUGMENT_GPU_TARGET = 20  # GPU crops/s over CPU crops/s
THROUGHPUT_TARGETS = {"images_per_s": 3000, "mfu": 0.45}  # ViT-S/16 bf16 on an H200
THROUGHPUT_BATCHES = (64, 128)
# The loader check: synthetic 8-band scenes as format-2 shards (webdataset, the training decoder);
# the GPU form at BigEarthNet's 120 px, enough samples for several batches per worker.
LOADER = {"cpu": {"samples": 64, "image_size": 32, "workers": 2}, "gpu": {"samples": 1024, "image_size": 120}}
# Dense bf16 tensor-core peaks (FLOP/s) by device name; the first name found in the GPU's wins.
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200 NVL", 835e12),
             ("H200", 989e12), ("A100", 312e12))


@dataclass(frozen=True)
class Form:
    """The model, crops and batch the training checks use. The GPU form spells out the schema's
    head sizes so that its figures keep meaning the same model if those defaults change."""

    arch: str
    depth: int  # 0 = the arch's own
    out_dim: int
    hidden_dim: int
    bottleneck_dim: int
    patch_out_dim: int
    patch_hidden_dim: int
    patch_bottleneck_dim: int
    global_size: int
    local_size: int
    n_local: int
    batch: int
    precisions: tuple[str, ...]  # mixed precisions the steps check trains in
    precision_steps: int  # steps of the fp32-against-bf16 comparison


CPU_FORM = Form(arch="vit_tiny_patch16_224", depth=1, out_dim=256, hidden_dim=64, bottleneck_dim=32,
                patch_out_dim=256, patch_hidden_dim=64, patch_bottleneck_dim=32, global_size=32, local_size=16,
                n_local=2, batch=4, precisions=("bf16",), precision_steps=5)
GPU_FORM = Form(arch="vit_small_patch16_224", depth=0, out_dim=65536, hidden_dim=2048, bottleneck_dim=256,
                patch_out_dim=4096, patch_hidden_dim=512, patch_bottleneck_dim=256, global_size=224, local_size=96,
                n_local=10, batch=64, precisions=("bf16", "fp16"), precision_steps=20)


# --------------------------------------------------------------------------------------- helpers
def _cuda() -> bool:
    return torch.cuda.is_available()


def _form() -> Form:
    return GPU_FORM if _cuda() else CPU_FORM


def _form_threads() -> contextlib.AbstractContextManager:
    """Torch threads for the training checks. The CPU form's models see a handful of tokens: a
    second thread only adds synchronisation, which on cores other jobs keep busy made its steps
    70x slower (1.4 s against 0.02 s on 2 shared cores); the GPU form keeps torch's own count."""
    return contextlib.nullcontext() if _cuda() else torch_threads(1)


def _forget_accelerate() -> None:
    """Drop Accelerate's process-wide state and the memory of the last check's models.

    Accelerate fixes one mixed precision per process with its first ``Accelerator`` and refuses
    another; the doctor trains in several, one after the other, so it forgets the state before
    each (an ``Accelerator`` made before then must not be used again)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    gc.collect()
    if _cuda():
        torch.cuda.empty_cache()


def _config(form: Form, objective: str, precision: str, batch: int | None = None, drop_path: bool = True):
    """The recipe of ``geodino bench step`` for ``form``: one epoch without warm-up, and the whole
    update (prototype layer included) from the first step."""
    from geodino.config.schema import Config

    cfg = Config()
    m, o, a = cfg.model, cfg.objective, cfg.augment
    m.arch, m.depth, m.patch_size = form.arch, form.depth, 16
    m.out_dim, m.hidden_dim, m.bottleneck_dim = form.out_dim, form.hidden_dim, form.bottleneck_dim
    if not drop_path:
        m.drop_path_rate = 0.0
    o.patch = OBJECTIVES[objective]
    o.patch_out_dim, o.patch_hidden_dim = form.patch_out_dim, form.patch_hidden_dim
    o.patch_bottleneck_dim = form.patch_bottleneck_dim
    a.global_size, a.local_size, a.n_local = form.global_size, form.local_size, form.n_local
    cfg.data.batch_size = batch or form.batch
    cfg.train.precision = precision
    cfg.optim.epochs, cfg.optim.warmup_epochs, cfg.optim.freeze_last_layer = 1, 0, 0
    return cfg


def _random_views(cfg, device: torch.device):
    """Standard-normal crops of the recipe's sizes, the same on every call."""
    from geodino.augment import Views

    generator = torch.Generator().manual_seed(0)

    def crop(size: int) -> torch.Tensor:
        return torch.randn(cfg.data.batch_size, IN_CHANS, size, size, generator=generator).to(device)

    globals_ = [crop(cfg.augment.global_size) for _ in range(2)]
    locals_ = [crop(cfg.augment.local_size) for _ in range(cfg.augment.n_local)]
    return Views(teacher=globals_, student=globals_ + locals_)


def _train_step(cfg, steps: int):
    """The engine's training step for ``cfg`` (weights seeded by ``cfg.run.seed``) and its views."""
    from geodino.engine.pretrain import DINOStep, make_accelerator

    _forget_accelerate()
    accelerator = make_accelerator(cfg.train.precision)
    return DINOStep(cfg, IN_CHANS, steps, accelerator), _random_views(cfg, accelerator.device)


def _synchronize() -> None:
    if _cuda():
        torch.cuda.synchronize()


def _number(value: float, digits: int = 5) -> float | str:
    """A loss for a JSON line: rounded, or "nan"/"inf" (which JSON has no number for)."""
    return round(value, digits) if math.isfinite(value) else str(value)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------- checks
def versions() -> dict[str, Any]:
    """The software and hardware a run would report, so that a failure elsewhere can be placed."""
    line: dict[str, Any] = {"ok": True, "python": platform.python_version(), "torch": torch.__version__,
                            **{name: _version(name) for name in PACKAGES}, "geodino": _version("geodino"),
                            "cpu": cpu_model(), "torch_threads": torch.get_num_threads()}
    if _cuda():
        gpu = torch.cuda.get_device_properties(0)
        line.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    nccl=".".join(str(part) for part in torch.cuda.nccl.version()), gpu=gpu.name,
                    gpu_memory_gib=round(gpu.total_memory / 2**30, 1), bf16_supported=torch.cuda.is_bf16_supported(),
                    flash_sdpa_enabled=torch.backends.cuda.flash_sdp_enabled())
    return line


def _three_steps(objective: str, precision: str) -> dict[str, Any]:
    """Three training steps; the last two timed and, on a GPU, watched for host synchronisations
    (each one stalls the host until the GPU catches up: the engine aims for none)."""
    step_fn, views = _train_step(_config(_form(), objective, precision), 3)
    step_fn(views, 0, False)  # the first step allocates and picks kernels: not timed
    cuda = _cuda()
    _synchronize()
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            for step in (1, 2):
                result = step_fn(views, step, False)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    _synchronize()
    seconds = (time.perf_counter() - started) / 2
    syncs = sum(1 for w in caught if issubclass(w.category, UserWarning) and "synchroniz" in str(w.message))
    losses = result.losses
    return {"objective": objective, "precision": precision,
            "finite": all(math.isfinite(v) for v in losses.values()),
            "losses": {name: _number(v) for name, v in losses.items()}, "s_per_step": round(seconds, 4),
            "syncs_per_step": syncs / 2 if cuda else None}


def steps() -> dict[str, Any]:
    """Every objective in every mixed precision of the form trains with finite losses."""
    form = _form()
    with _form_threads():
        runs = [_three_steps(objective, precision) for objective in OBJECTIVES for precision in form.precisions]
    return {"ok": all(r["finite"] for r in runs), "form": "gpu" if _cuda() else "cpu",
            "target_syncs_per_step": 0, "runs": runs}


def _checkpoint(run_dir: str | Path) -> dict[str, Any]:
    return torch.load(Path(run_dir) / "checkpoint.pt", weights_only=True)


def _pretrain(*overrides: str) -> None:
    from geodino.config import load_config
    from geodino.engine.pretrain import pretrain

    _forget_accelerate()
    pretrain(load_config(None, list(overrides)))


def resume() -> dict[str, Any]:
    """A run stopped at step 4 and resumed from its checkpoint ends with the teacher of a run that
    never stopped."""
    with tempfile.TemporaryDirectory(prefix="geodino-doctor-") as tmp, _form_threads():
        straight, resumed = Path(tmp) / "straight", Path(tmp) / "resumed"
        _pretrain(*RESUME, f"run.out_dir={straight}")
        _pretrain(*RESUME, f"run.out_dir={resumed}", f"run.max_steps={RESUME_STOP}")
        stopped_at = _checkpoint(resumed)["step"]
        _pretrain(*RESUME, f"run.out_dir={resumed}")
        a, end = _checkpoint(straight)["teacher"], _checkpoint(resumed)
        b, final_step = end["teacher"], end["step"]
    if a.keys() != b.keys():
        return {"ok": False, "error": "the resumed teacher has other tensors than the straight one"}
    diff = float(torch.stack([(a[key].float() - b[key].float()).abs().max() for key in a]).max())  # NaN stays NaN
    return {"ok": diff < RESUME_ATOL and stopped_at == RESUME_STOP and final_step == RESUME_STEPS,
            "stopped_at": stopped_at, "final_step": final_step, "max_abs_diff": diff, "atol": RESUME_ATOL}


def torchrun() -> dict[str, Any]:
    """``geodino pretrain`` under ``torchrun`` (one process): the launch a multi-GPU run uses, with
    the process group Accelerate sets up for it."""
    with tempfile.TemporaryDirectory(prefix="geodino-doctor-") as tmp:
        # --standalone: a local rendezvous on a free port, so a busy 29500 does not matter
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                   "-m", "geodino", "pretrain", *TINY, f"run.out_dir={tmp}", "run.max_steps=2"]
        # the CPU form's one thread (see _form_threads); torchrun only sets it for several processes
        # (NCCL_DEBUG=WARN: a failing NCCL set-up says why in the last line of stderr)
        env = {**os.environ, "NCCL_DEBUG": "WARN"} if _cuda() else {**os.environ, "OMP_NUM_THREADS": "1"}
        timeout = TORCHRUN_TIMEOUT_S["gpu" if _cuda() else "cpu"]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"torchrun did not finish within {timeout} s"}
        line: dict[str, Any] = {"ok": proc.returncode == 0, "returncode": proc.returncode,
                                "backend": "nccl" if _cuda() else "gloo"}  # Accelerate's choice
        if proc.returncode != 0:
            stderr = proc.stderr.strip().splitlines()
            line["error"] = stderr[-1] if stderr else f"torchrun exited with {proc.returncode}"
        elif _checkpoint(tmp)["step"] != 2:
            line.update(ok=False, error="the run under torchrun did not save step 2")
    return line


def precision() -> dict[str, Any]:
    """fp32 and bf16 from the same weights on the same views: the losses agree to bf16's rounding."""
    form = _form()
    losses: dict[str, list[float]] = {}
    with _form_threads():
        for name in ("no", "bf16"):
            # no stochastic depth: its draws would differ between the runs for another reason than rounding
            step_fn, views = _train_step(_config(form, "dino", name, drop_path=False), form.precision_steps)
            losses[name] = [step_fn(views, step, False).losses["loss"] for step in range(form.precision_steps)]
    diffs = [abs(a - b) for a, b in zip(losses["no"], losses["bf16"])]
    worst = max(diffs)
    relative = max(d / max(abs(a), 1e-12) for d, a in zip(diffs, losses["no"]))
    return {"ok": all(math.isfinite(d) for d in diffs) and relative < PRECISION_RTOL,
            "form": "gpu" if _cuda() else "cpu", "steps": form.precision_steps, "max_abs_diff": _number(worst),
            "max_rel_diff": _number(relative), "rtol": PRECISION_RTOL,
            "abs_diff_per_step": [_number(d) for d in diffs]}


def _peak_bf16(device_name: str) -> float | None:
    return next((flops for name, flops in PEAK_BF16 if name in device_name), None)


def _throughput(batch: int, peak: float | None, warmup: int = 3, timed: int = 10) -> dict[str, Any]:
    """Images/s, peak memory and model FLOP utilisation of the ViT-S/16 bf16 step at ``batch``."""
    from torch.utils.flop_counter import FlopCounterMode

    step_fn, views = _train_step(_config(GPU_FORM, "dino", "bf16", batch=batch), warmup + timed + 1)
    for step in range(warmup):
        step_fn(views, step, False)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for step in range(warmup, warmup + timed):
        step_fn(views, step, False)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / timed
    peak_memory = torch.cuda.max_memory_allocated()
    with FlopCounterMode(display=False) as counter:  # after timing: counting slows the step
        step_fn(views, warmup + timed, False)
    flops = counter.get_total_flops()
    return {"batch": batch, "images_per_s": round(batch / seconds, 1), "s_per_step": round(seconds, 4),
            "peak_memory_gib": round(peak_memory / 2**30, 2), "tflop_per_step": round(flops / 1e12, 2),
            "mfu": round(flops / seconds / peak, 3) if peak else None}


# The images/s of the reference step that ``throughput`` measured in this process, for ``loader``
# to compare the data path against without training ViT-S/16 a second time.
_STEP_IMAGES_PER_S: dict[str, float] = {}


def throughput() -> dict[str, Any]:
    """What the GPU delivers on the reference DINO step (ViT-S/16, bf16, 2 x 224 + 10 x 96 crops)."""
    if not _cuda():
        return {"skipped": "no GPU"}
    name = torch.cuda.get_device_name(0)
    peak = _peak_bf16(name)
    rows = [_throughput(batch, peak) for batch in THROUGHPUT_BATCHES]
    best = max(rows, key=lambda r: r["images_per_s"])
    _STEP_IMAGES_PER_S["dino"] = best["images_per_s"]
    meets = (best["images_per_s"] >= THROUGHPUT_TARGETS["images_per_s"]
             and (best["mfu"] or 0) >= THROUGHPUT_TARGETS["mfu"])
    return {"ok": True, "gpu": name, "peak_bf16_flop_per_s": peak, "rows": rows, "targets": THROUGHPUT_TARGETS,
            "meets_targets": meets}


def _loader_samples_per_s(samples: int, image_size: int, batch: int, workers: int) -> float:
    """Samples/s of pretraining's shard path over freshly written synthetic shards: the loader with
    ``workers``, then the images assembled on the training device. Timed after the first batch
    (worker start-up is paid once per run, not per step)."""
    from geodino.data.batches import batch_images
    from geodino.data.shards.stream import make_shard_loader
    from geodino.data.sources.synthetic_shards import write_synthetic_shards

    device = torch.device("cuda" if _cuda() else "cpu")
    with tempfile.TemporaryDirectory(prefix="geodino-doctor-loader-") as tmp:
        # at least two shards per worker, so that none of them reads another's
        write_synthetic_shards(tmp, samples, 1, image_size, seed=0, shard_size=max(1, samples // (2 * workers)),
                               workers=1, progress=False)
        stream = make_shard_loader(tmp, batch_size=batch, num_workers=workers, shuffle_buffer=4 * batch,
                                   steps_per_epoch=samples // batch, split="train", device_assembly=True,
                                   pin_memory=device.type == "cuda")
        batches = iter(stream)
        batch_images(next(batches), device)
        _synchronize()
        started, count = time.perf_counter(), 0
        for item in batches:
            count += batch_images(item, device).shape[0]
        _synchronize()
        seconds = time.perf_counter() - started
    return count / seconds


def loader() -> dict[str, Any]:
    """Can the data path feed the step? Shard loader samples/s, with the workers a run would use,
    against the images/s of a training step (``throughput``'s on a GPU, measured here otherwise)."""
    form_name = "gpu" if _cuda() else "cpu"
    form, settings = _form(), LOADER[form_name]
    workers = settings.get("workers") or max(1, min(8, (os.cpu_count() or 2) - 1))
    samples_per_s = _loader_samples_per_s(settings["samples"], settings["image_size"], form.batch, workers)
    if "dino" in _STEP_IMAGES_PER_S:
        step_rate, step_from = _STEP_IMAGES_PER_S["dino"], "throughput check"
    else:
        with _form_threads():
            step_rate = form.batch / _three_steps("dino", "bf16" if _cuda() else "no")["s_per_step"]
        step_from = f"{form_name} form, dino, measured here"
    return {"ok": samples_per_s > 0, "form": form_name, "workers": workers, "image_size": settings["image_size"],
            "loader_samples_per_s": round(samples_per_s, 1), "step_images_per_s": round(step_rate, 1),
            "step_from": step_from, "loader_over_step": round(samples_per_s / step_rate, 2),
            "keeps_up": samples_per_s >= step_rate}


def _crops_per_s(*arguments: str) -> float:
    """``geodino bench augment`` with these arguments; its own JSON line is kept off the doctor's."""
    from geodino.bench import augment as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    with contextlib.redirect_stdout(io.StringIO()):
        return bench.run(parser.parse_args(list(arguments)))["crops_per_s"]


def augment() -> dict[str, Any]:
    """Multi-crop augmentation of raw 14-band images: crops/s on the CPU and, with a GPU, there too."""
    if not _cuda():
        small = ("--batch-size", "8", "--image-size", "64", "--global-size", "32", "--local-size", "16",
                 "--local-crops", "2", "--steps", "5", "--warmup", "1")
        return {"ok": True, "cpu_crops_per_s": _crops_per_s("--device", "cpu", *small), "cuda_crops_per_s": None,
                "gpu_over_cpu": None}
    # The bench's default workload (BigEarthNet-MM-like: 64 x 14 bands x 120 px, 2 x 112 + 8 x 48)
    cpu = _crops_per_s("--device", "cpu", "--steps", "3", "--warmup", "1")
    cuda = _crops_per_s("--device", "cuda")
    return {"ok": True, "cpu_crops_per_s": cpu, "cuda_crops_per_s": cuda, "gpu_over_cpu": round(cuda / cpu, 1),
            "target_gpu_over_cpu": AUGMENT_GPU_TARGET}


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    # torchrun last: the first NCCL set-up on a machine is the check likeliest to hang
    "versions": versions, "steps": steps, "resume": resume, "precision": precision,
    "throughput": throughput, "loader": loader, "augment": augment, "torchrun": torchrun,
}


# ---------------------------------------------------------------------------------------- runner
def select(only: str | None) -> list[str]:
    """The checks named in ``only`` (comma-separated), in the doctor's order; all when None (no --only)."""
    if only is None:
        return list(CHECKS)
    names = comma_list(only, "--only")
    unknown = [name for name in names if name not in CHECKS]
    if unknown or not names:
        raise ValueError(f"--only: unknown check(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(CHECKS)}")
    return [name for name in CHECKS if name in names]


def _one_line(err: BaseException) -> str:
    message = str(err).strip().splitlines()
    return f"{type(err).__name__}: {message[0]}" if message else type(err).__name__


def run_checks(names: list[str], out: str | None = None) -> list[dict[str, Any]]:
    """Run the named checks in turn, printing each one's line as it ends; also write them all to
    ``out`` as a JSON list. Returns the lines."""
    lines = []
    for name in names:
        started = time.perf_counter()
        try:
            line = {"check": name, **CHECKS[name]()}
        except Exception as err:  # noqa: BLE001 - any failure is this check's result, not the doctor's end
            line = {"check": name, "ok": False, "error": _one_line(err)}
        finally:
            _forget_accelerate()  # the next check, or whatever runs after the doctor, starts afresh
        line["wall_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps(line), flush=True)
        lines.append(line)
    if out:
        write_json_atomic(out, lines)
    return lines


def passed(lines: list[dict[str, Any]]) -> bool:
    """Every check passed (a skipped one has no ``ok`` and does not count against)."""
    return all(line.get("ok", True) for line in lines)
