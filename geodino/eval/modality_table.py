"""The missing-modality table: one evaluation repeated with sensors hidden (optical only, SAR only,
both), written as CSV, Markdown and a bar chart.

Choices are named as the dataset card names modalities (``s2``, ``s1``, ``s2+s1``); rows say what
the model saw in words.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geodino.utils import comma_list, save_figure, write_text_atomic

SENSOR_WORDS = {"s2": "optical", "s1": "SAR", "rgb": "RGB"}


def split_choices(text: str | None) -> list[str]:
    """``"s2,s1,s2+s1"`` → ``["s2", "s1", "s2+s1"]``."""
    return comma_list(text or None, "--modalities")


def check_choices(choices: Sequence[str], modalities: Sequence[str]) -> list[str]:
    """The choices, if every modality they name is one of the card's."""
    for choice in choices:
        unknown = [m for m in choice.split("+") if m.strip() not in modalities]
        if unknown:
            raise ValueError(f"modality choice {choice!r}: {unknown} not among the card's modalities "
                             f"{list(modalities)}")
    return list(choices)


def describe_choice(choice: str, modalities: Sequence[str]) -> str:
    """``"s2"`` → ``"optical only"``, ``"s2+s1"`` (every modality) → ``"both (optical+SAR)"``."""
    kept = [m.strip() for m in choice.split("+")]
    words = "+".join(SENSOR_WORDS.get(m, m) for m in kept)
    if set(kept) >= set(modalities):
        return f"both ({words})" if len(kept) == 2 else f"all ({words})"
    return f"{words} only"


def table_rows(results: dict[str, dict[str, Any]], modalities: Sequence[str],
               metrics: Sequence[str]) -> list[dict[str, Any]]:
    return [{"modalities": choice, "input": describe_choice(choice, modalities),
             **{m: results[choice].get(m, math.nan) for m in metrics}} for choice in results]


def to_markdown(rows: list[dict[str, Any]], metrics: Sequence[str], title: str = "") -> str:
    header = ["input", "modalities", *metrics]
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join(["---", "---"] + ["---:"] * len(metrics)) + " |")
    for row in rows:
        cells = [row["input"], f"`{row['modalities']}`", *(f"{row[m]:.2f}" for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]], metrics: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["input", "modalities", *metrics], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def bar_chart(rows: list[dict[str, Any]], metrics: Sequence[str], out: str | Path, title: str = "") -> Path:
    """One group of bars per metric, one bar per input."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 + 0.6 * len(metrics) * max(1, len(rows))), 4.0))
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(metrics))]
        bars = ax.bar(xs, [row[m] for m in metrics], width, label=row["input"])
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(metrics)), list(metrics))
    ax.set_ylabel("%")
    ax.set_ylim(0, 110)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=max(len(rows), 1), frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
    return Path(out)


def write_modality_table(results: dict[str, dict[str, Any]], modalities: Sequence[str], metrics: Sequence[str],
                         out_dir: str | Path, stem: str, title: str = "") -> dict[str, Any]:
    """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>.png`` under ``out_dir``; returns the rows,
    the Markdown ``text`` and the paths (``csv``, ``md``, ``png``)."""
    out_dir = Path(out_dir)
    rows = table_rows(results, modalities, metrics)
    markdown = to_markdown(rows, metrics, title)
    paths = {"csv": out_dir / f"{stem}.csv", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    write_text_atomic(paths["csv"], to_csv(rows, metrics))
    write_text_atomic(paths["md"], markdown)
    bar_chart(rows, metrics, paths["png"], title)
    return {"text": markdown, "rows": rows, **{k: str(v) for k, v in paths.items()}}
