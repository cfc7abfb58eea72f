"""Helpers for tests that run ``geodino pretrain`` for real, in-process or as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from geodino.bench.doctor import TINY as DOCTOR_TINY

# A tiny but complete recipe (2-block ViT, 32-px synthetic scenes, 2 local crops, 8 steps): the one
# `geodino doctor` runs too, kept there.
TINY = list(DOCTOR_TINY)


def tiny_on(source: str, root: str | Path = "", *more: str) -> list[str]:
    """:data:`TINY` on another data source: its keys that ``source`` does not read (the synthetic
    scene count) dropped, since a recipe given on the command line may not carry them."""
    from geodino.data.registry import get_source

    read = get_source(source).keys_read("pretraining")
    kept = [o for o in TINY if not o.startswith("data.") or o.split("=")[0].split(".")[1] in read]
    return [*kept, f"data.source={source}", *([f"data.root={root}"] if root else []), *more]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = "1"  # two processes on two cores
    e["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return e


def pretrain_cmd(out_dir: Path, *overrides: str, nproc: int = 1) -> list[str]:
    source = [o.split("=", 1)[1] for o in overrides if o.startswith("data.source=")]
    base = tiny_on(source[-1]) if source else TINY  # the scene count is the synthetic source's alone
    args = ["-m", "geodino", "pretrain", f"run.out_dir={out_dir}", *base, *overrides]
    if nproc == 1:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_port", str(29500 + os.getpid() % 1000), *args]


def run_pretrain(out_dir: Path, *overrides: str, nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(pretrain_cmd(out_dir, *overrides, nproc=nproc), env=env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def losses(out_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def teacher(out_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / "checkpoint.pt", weights_only=True)["teacher"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=lambda m, k=key: f"{k}: {m}")


def kill_run_at(out_dir: Path, *overrides: str, when: Callable[[int], bool], timeout: int = 240) -> int:
    """Start ``geodino pretrain`` and SIGKILL it as soon as its checkpoint's step satisfies ``when``;
    returns that step (the test fails if the run ended on its own first)."""
    from geodino.runs.checkpoint import load_checkpoint

    proc = subprocess.Popen(pretrain_cmd(out_dir, *overrides), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        ckpt = out_dir / "checkpoint.pt"
        if ckpt.exists() and when(load_checkpoint(ckpt)["step"]):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    return load_checkpoint(out_dir / "checkpoint.pt")["step"]
