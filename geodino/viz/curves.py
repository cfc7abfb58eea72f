"""Training curves from a run's JSON-lines metrics log, as a PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from geodino.utils import atomic_path  # noqa: E402


def plot_curves(records: list[dict[str, Any]], out: str | Path, title: str = "") -> Path:
    """Loss (with ln K for reference), learning rate and collapse signals against the step."""
    records = [r for r in records if "loss" in r]
    out = Path(out)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    steps = [r["step"] for r in records]
    ax = axes[0]
    ax.plot(steps, [r["loss"] for r in records], label="loss")
    for key in sorted({k for r in records for k in r if k.startswith("loss_")}):
        ax.plot(steps, [r.get(key, math.nan) for r in records], label=key)
    if records and "log_k" in records[-1]:
        ax.axhline(records[-1]["log_k"], color="grey", ls="--", lw=0.8, label="ln K (uniform)")
    ax.set(xlabel="step", ylabel="loss", title="loss")
    ax.legend(fontsize=8)
    axes[1].plot(steps, [r.get("lr", math.nan) for r in records], color="tab:orange")
    axes[1].set(xlabel="step", ylabel="learning rate", title="learning rate")
    ax = axes[2]
    ax.plot(steps, [r.get("teacher_entropy", math.nan) for r in records], label="teacher entropy")
    ax.plot(steps, [r.get("teacher_kl_uniform", math.nan) for r in records], label="KL(mean ‖ uniform)")
    ax.set(xlabel="step", ylabel="nats", title="collapse signals")
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
