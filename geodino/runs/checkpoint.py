"""Checkpoints: atomic writes, safe loading, and the RNG states that make a resumed run exact.

A checkpoint holds plain tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(weights_only=True)``: opening one never runs code.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geodino.utils import atomic_path, one_line, write_failure

log = logging.getLogger("geodino")

CHECKPOINT_NAME = "checkpoint.pt"
# The files of a `geodino export` folder: written by geodino.export, read back by model.init,
# fine-tuning and evaluation, and recognised when one is taken for a checkpoint.
EXPORT_WEIGHTS, EXPORT_CONFIG, EXPORT_BANDS = "model.safetensors", "config.json", "bands.json"


def rng_state() -> dict[str, Any]:
    """This process's RNG states as weights-only-loadable values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        # Only this process's device: another launch may give a process another number of visible
        # GPUs (one per task under SLURM, all of them under torchrun), so a list by index would
        # not fit (issue 14).
        state["cuda_device"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if not torch.cuda.is_available():
        return
    if "cuda_device" in state:
        torch.cuda.set_rng_state(state["cuda_device"])
    elif "cuda" in state:  # checkpoints before issue 14: every visible device's state, by index
        device = torch.cuda.current_device()
        if device < len(state["cuda"]):
            torch.cuda.set_rng_state(state["cuda"][device])
        else:
            log.warning("the checkpoint holds CUDA RNG states for %d devices and this process uses device %d: "
                        "its CUDA RNG starts fresh", len(state["cuda"]), device)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a crash mid-write keeps the previous checkpoint."""
    save_torch(state, path)


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically. torch's zip writer reports a write the file system
    refused (a full disk, a quota, a file-size limit) as a RuntimeError ("unexpected pos ...");
    here it is an OSError naming the file and the free space, which commands report in one line."""
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:
            raise write_failure(path, err) from err


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - report which file is broken, whatever the cause
        raise ValueError(f"checkpoint {path} cannot be read: {unreadable_reason(err, path)}") from err


def unreadable_reason(err: BaseException, path: str | Path | None = None) -> str:
    """Why ``torch.load(..., weights_only=True)`` of ``path`` failed, in a few words. PyTorch's own
    messages run to a dozen lines and advise ``weights_only=False``, which runs whatever code a
    file holds: not advice to pass on about a file that is probably just broken."""
    text = str(err)
    if path is not None:
        with open(path, "rb") as f:
            head = f.read(2)
        if head and not head.startswith((b"PK", b"\x80")):  # torch.save writes a zip; old torch a pickle
            return "not a PyTorch file: it starts neither as a zip archive nor as a pickle"
    if isinstance(err, EOFError) or "failed finding central directory" in text or "PytorchStreamReader" in text:
        return "the file is empty, truncated or corrupt (an interrupted copy or download?)"
    if "Weights only load failed" in text:
        return ("not a PyTorch file of tensors: it is corrupt, or holds objects geodino does not load, "
                "since loading those would run code from the file")
    return f"{type(err).__name__}: {one_line(err, 300)}"


# What a pretraining checkpoint holds; the one-line message says what a file is when it is not one.
PRETRAINING_KEYS = ("step", "student", "teacher", "optimizer", "config")


def load_pretraining_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                                need: tuple[str, ...] = PRETRAINING_KEYS) -> dict[str, Any]:
    """A geodino pretraining checkpoint, or a one-line error that says what ``path`` is instead: an
    export folder, a segmentation checkpoint, some other state dict."""
    path = Path(path)
    if path.is_dir():
        what = ("a geodino export folder" if (path / EXPORT_WEIGHTS).is_file()
                else "a folder")
        hint = (f"; its {CHECKPOINT_NAME}" if (path / CHECKPOINT_NAME).is_file()
                else "; a run folder holds checkpoint.pt")
        raise ValueError(f"{path} is {what}, not a pretraining checkpoint file{hint}")
    if path.suffix == ".safetensors":
        raise ValueError(f"{path} holds weights only (safetensors), not a pretraining checkpoint "
                         f"(step, optimizer, recipe) to resume or evaluate")
    state = load_checkpoint(path, map_location)
    missing = [k for k in need if k not in state]
    if missing:
        if "model" in state and "classes" in state:
            what = "a segmentation checkpoint (geodino finetune seg)"
        else:
            what = f"not a geodino pretraining checkpoint (its keys: {sorted(state)[:8]})"
        raise ValueError(f"{path} is {what}: it has no {', '.join(repr(k) for k in missing)}")
    return state
