"""Training curves from a run's JSON-lines metrics log, as a PNG: loss, learning rate, k-NN accuracy
and the collapse signals against the step.

k-NN points come from ``knn_*`` fields of the log (periodic evaluations, e.g. ``knn_top1``) and
from the run's ``knn.json`` (random teacher at step 0, trained teacher at the last step).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from geodino.utils import read_json, save_figure  # noqa: E402

KNN_METRICS = ("top1", "top5", "map_micro", "map_macro")


def knn_series(records: list[dict[str, Any]], knn: dict[str, Any] | None = None) -> dict[str, list[tuple]]:
    """``{"top1": [(step, value), ...], ...}`` from the log's ``knn_*`` fields and ``knn.json``."""
    series: dict[str, list[tuple]] = {}
    for r in records:
        for key, value in r.items():
            if key.startswith("knn_") and key[4:] in KNN_METRICS and isinstance(value, (int, float)):
                series.setdefault(key[4:], []).append((r.get("step", 0), value))
    if knn:
        last = max((r.get("step", 0) for r in records), default=0)
        for step, part in ((0, knn.get("random_teacher")), (last, knn.get("trained_teacher"))):
            for metric in KNN_METRICS:
                if part and metric in part:
                    series.setdefault(metric, []).append((step, part[metric]))
    return {m: sorted(set(points)) for m, points in series.items()}


def plot_curves(records: list[dict[str, Any]], out: str | Path, title: str = "",
                knn: dict[str, Any] | None = None) -> Path:
    """Loss (with ln K for reference), learning rate, k-NN accuracy and collapse signals."""
    knn_points = knn_series(records, knn)
    records = [r for r in records if "loss" in r]
    out = Path(out)
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    (ax_loss, ax_lr), (ax_knn, ax_collapse) = axes
    steps = [r["step"] for r in records]
    # A line through one or a few points draws nothing visible: mark the points of short runs.
    dots = {"marker": "o", "markersize": 3} if len(steps) <= 20 else {}
    ax_loss.plot(steps, [r["loss"] for r in records], label="loss", **dots)
    for key in sorted({k for r in records for k in r if k.startswith("loss_")}):
        ax_loss.plot(steps, [r.get(key, math.nan) for r in records], label=key, **dots)
    if records and "log_k" in records[-1]:
        ax_loss.axhline(records[-1]["log_k"], color="grey", ls="--", lw=0.8, label="ln K (uniform)")
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    ax_loss.legend(fontsize=8)
    ax_lr.plot(steps, [r.get("lr", math.nan) for r in records], color="tab:orange", **dots)
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    for metric, points in knn_points.items():
        ax_knn.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=metric)
    if knn_points:
        ax_knn.legend(fontsize=8)
    else:
        ax_knn.text(0.5, 0.5, "no k-NN evaluations in this run", ha="center", va="center",
                    transform=ax_knn.transAxes, color="grey")
    ax_knn.set(xlabel="step", ylabel="%", title="k-NN (teacher)")
    ax_collapse.plot(steps, [r.get("teacher_entropy", math.nan) for r in records], label="teacher entropy", **dots)
    ax_collapse.plot(steps, [r.get("teacher_kl_uniform", math.nan) for r in records], label="KL(mean ‖ uniform)",
                     **dots)
    if records and "log_k" in records[-1]:
        ax_collapse.axhline(records[-1]["log_k"], color="grey", ls="--", lw=0.8, label="ln K")
    ax_collapse.set(xlabel="step", ylabel="nats", title="collapse signals")
    ax_collapse.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
    return out


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """The curves of a pretraining run folder (``metrics.jsonl``, ``knn.json``), to ``curves.png``."""
    from geodino.runs.metrics import MetricsLog

    run_dir = Path(run_dir)
    log_path = run_dir / "metrics.jsonl"
    if not log_path.is_file():
        raise FileNotFoundError(f"{log_path} not found: not a geodino run folder?")
    records = MetricsLog(log_path).read()
    if not records:
        raise ValueError(f"{log_path} holds no records yet")
    knn_path = run_dir / "knn.json"
    knn = read_json(knn_path) if knn_path.is_file() else None
    return plot_curves(records, out or run_dir / "curves.png", title=run_dir.name, knn=knn)
