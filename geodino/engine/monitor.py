"""Watching a run: collapse signals of the teacher, the JSON-lines metrics log, warnings."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from geodino.utils import write_text_atomic

log = logging.getLogger("geodino")

# Thresholds on the normalised signals (fractions of ln K); see collapse_signals.
UNIFORM_COLLAPSE = 0.98  # every teacher output almost uniform: the loss sits at ln K
DOMINANT_COLLAPSE = 0.02  # the batch's mean output sits on very few prototypes
# Each teacher output sits on about one prototype (entropy under 5 % of ln K: 0.42 nats of 8.3 at
# K = 4096): the first step of one-prototype collapse, seen before the batch mean follows.
ENTROPY_FLOOR = 0.05


@torch.no_grad()
def collapse_signals(teacher_probs: list[torch.Tensor]) -> dict[str, float]:
    """Entropy of the teacher's outputs and KL of their mean from uniform, in nats.

    The two DINO failure modes show up as opposite extremes (Caron et al. 2021, §5.3):
    uniform collapse drives the per-sample entropy to ``ln K``; one-prototype collapse drives the
    entropy of the batch-mean output (``ln K − KL``) to 0.
    """
    p = torch.cat(teacher_probs).float()
    k = p.shape[-1]
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()
    mean_p = p.mean(0)
    mean_entropy = -(mean_p * torch.log(mean_p.clamp_min(1e-12))).sum()
    return {
        "teacher_entropy": float(entropy),
        "teacher_kl_uniform": float(math.log(k) - mean_entropy),
        "log_k": math.log(k),
    }


def collapse_verdict(signals: dict[str, float]) -> str | None:
    """``uniform`` (outputs near uniform), ``dominant`` (the batch shares very few prototypes),
    ``one-hot`` (each output on about one prototype: entropy under :data:`ENTROPY_FLOOR` of ln K),
    or None."""
    log_k = signals["log_k"]
    if signals["teacher_entropy"] > UNIFORM_COLLAPSE * log_k:
        return "uniform"
    if log_k - signals["teacher_kl_uniform"] < DOMINANT_COLLAPSE * log_k:
        return "dominant"
    if signals["teacher_entropy"] < ENTROPY_FLOOR * log_k:
        return "one-hot"
    return None


class MetricsLog:
    """Appends one JSON object per line; safe to reopen after a resume."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        """Drop records beyond ``step`` (written after the checkpoint a resumed run starts from)."""
        if not self.path.exists():
            return
        kept = [json.dumps(r) for r in self.read() if r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a killed process
                continue
        return records
