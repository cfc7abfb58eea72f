"""Watching a run: collapse signals of the teacher and their verdicts."""

from __future__ import annotations

import logging
import math

import torch


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
