"""Per-iteration schedules, precomputed as arrays as in the reference DINO.

Cosine: ``final + ½(base − final)(1 + cos(π i / n))`` over the ``n`` iterations after an optional
linear warm-up (which starts at ``warmup_start`` and ends exactly at ``base``).
"""

from __future__ import annotations

import numpy as np


def cosine_schedule(
    base: float,
    final: float,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: int = 0,
    warmup_start: float = 0.0,
) -> np.ndarray:
    total = epochs * steps_per_epoch
    warmup_steps = warmup_epochs * steps_per_epoch
    if warmup_steps > total:
        raise ValueError(f"warm-up ({warmup_steps} steps) is longer than the schedule ({total} steps)")
    warmup = np.linspace(warmup_start, base, warmup_steps) if warmup_steps > 0 else np.array([])
    i = np.arange(total - warmup_steps)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * i / max(len(i), 1)))
    schedule = np.concatenate([warmup, cosine])
    assert len(schedule) == total
    return schedule


def teacher_temperature_schedule(
    warmup_temp: float, temp: float, warmup_epochs: int, epochs: int
) -> np.ndarray:
    """Teacher temperature per **epoch**: linear from ``warmup_temp`` to ``temp``, then constant.

    Indexed per epoch, as in the reference implementation.
    """
    warmup = np.linspace(warmup_temp, temp, warmup_epochs)
    return np.concatenate([warmup, np.full(epochs - warmup_epochs, temp)])


class Schedules:
    """All per-iteration values of a DINO run, derived from the recipe and the global batch size."""

    def __init__(self, optim, dino, steps_per_epoch: int, global_batch: int) -> None:
        epochs = optim.epochs
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = epochs * steps_per_epoch
        peak_lr = optim.lr * global_batch / 256.0  # linear scaling rule
        self.lr = cosine_schedule(peak_lr, optim.min_lr, epochs, steps_per_epoch, optim.warmup_epochs)
        self.weight_decay = cosine_schedule(optim.weight_decay, optim.weight_decay_end, epochs, steps_per_epoch)
        self.momentum = cosine_schedule(optim.momentum_teacher, 1.0, epochs, steps_per_epoch)
        self.teacher_temp = teacher_temperature_schedule(
            dino.warmup_teacher_temp, dino.teacher_temp, dino.warmup_teacher_temp_epochs, epochs
        )

    def epoch(self, step: int) -> int:
        return step // self.steps_per_epoch

    def teacher_temperature(self, step: int) -> float:
        epoch = min(self.epoch(step), len(self.teacher_temp) - 1)
        return float(self.teacher_temp[epoch])
