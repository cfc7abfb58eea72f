"""Several runs side by side: the recipe settings that differ and every score each run has, as one
Markdown table, one CSV and one bar chart (what ``geodino compare`` writes).

A run folder is what ``geodino pretrain`` writes (``config.yaml``, ``summary.json``,
``metrics.jsonl``, ``knn.json``) or what ``geodino finetune seg`` writes (``config.yaml``,
``metrics.jsonl``, ``metrics.json``). Scores are gathered from:

- ``summary.json`` / ``metrics.jsonl``: steps and final loss (the last logged loss while a run is
  still going);
- ``knn.json``: the end-of-pretraining k-NN of the random and the trained teacher, and the gain;
- ``eval*/knn.json`` and ``eval*/linear.json`` (``geodino eval``; ``eval/`` by default,
  ``eval_random_init/`` for the random-init baseline): one score per modality choice, the headline
  metric of the report (top-1 for single-label data, micro-mAP for multi-label data); the
  ``*_modalities.csv`` table stands in for a missing JSON report;
- ``metrics.json`` (segmentation fine-tuning): mIoU, of the run itself or of a fine-tuning run
  written inside a pretraining run's folder.

Whatever is missing stays blank. Only a folder that is no run at all is an error.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from geodino.utils import flatten_dict, save_figure, write_text_atomic

log = logging.getLogger("geodino")

# Files of which at least one sits beside config.yaml in a run folder (pretraining or fine-tuning).
RUN_FILES = ("summary.json", "metrics.jsonl", "knn.json", "checkpoint.pt", "metrics.json", "segmentation.pt")
# Keys that say where and how verbosely a run wrote, not what it trained: never a difference worth showing.
BOOKKEEPING = ("run.out_dir", "run.resume", "train.progress", "train.log_every", "train.checkpoint_every",
               "train.predictions", "data.num_workers")
PROTOCOLS = ("knn", "linear")
# Kinds of result rows: how they are printed, and which of them are percentages for the bar chart.
COUNT, LOSS, SCORE, GAIN = "count", "loss", "score", "gain"


# -- reading one run ------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    """The object in ``path``; None when the file is absent or not a JSON object (said once, as a
    warning: a hand-edited or foreign file must not stop the comparison of the other runs)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("%s: not readable as JSON (%s); its results stay blank", path, err)
        return None
    if not isinstance(data, dict):
        log.warning("%s: not a JSON object; its results stay blank", path)
        return None
    return data


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a killed process
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class _Rows:
    """A run's result rows: value, kind and where the row belongs in the table (``rank``: run
    length, pretraining k-NN, evaluation reports by folder and protocol, segmentation)."""

    def __init__(self) -> None:
        self.values: dict[str, float | None] = {}
        self.kinds: dict[str, str] = {}
        self.ranks: dict[str, tuple] = {}

    def add(self, key: str, value: float | None, kind: str, rank: tuple) -> None:
        self.values[key], self.kinds[key], self.ranks[key] = value, kind, rank


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``config.yaml`` as a dict; ValueError (one line, naming the folder) if ``run_dir``
    is not a run folder."""
    import yaml

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ValueError(f"{run_dir}: no such folder")
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a folder (a run folder holds config.yaml and summary.json or metrics.jsonl)")
    config_path = run_dir / "config.yaml"
    if not config_path.is_file() or not any((run_dir / name).is_file() for name in RUN_FILES):
        raise ValueError(f"{run_dir}: not a geodino run folder (no config.yaml beside summary.json, "
                         "metrics.jsonl or a checkpoint)")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{config_path}: not readable YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ValueError(f"{config_path}: not a geodino recipe (no model section)")
    return config


def _headline(values: dict[str, Any], task: str | None = None) -> str | None:
    """The figure a report is judged by: micro-mAP for multi-label data, top-1 otherwise."""
    if task == "multi-label" or (task is None and "map_micro" in values):
        return "map_micro" if "map_micro" in values else None
    return "top1" if "top1" in values else None


def _pretrain_knn(knn: dict[str, Any] | None, rows: _Rows) -> None:
    """Random vs trained teacher from the run's ``knn.json`` (older runs wrote only ``top1_gain``;
    newer ones also name the ``metric`` and its ``gain``)."""
    if not knn:
        return
    random = knn.get("random_teacher") if isinstance(knn.get("random_teacher"), dict) else {}
    trained = knn.get("trained_teacher") if isinstance(knn.get("trained_teacher"), dict) else {}
    metric = knn.get("metric") or _headline(trained) or _headline(random)
    if metric is None:
        return
    before, after = _number(random.get(metric)), _number(trained.get(metric))
    gain = _number(knn.get("gain")) if "metric" in knn else None
    if gain is None and metric == "top1":
        gain = _number(knn.get("top1_gain"))
    if gain is None and before is not None and after is not None:
        gain = after - before
    for key, value, kind in ((f"pretrain k-NN {metric}, random teacher", before, SCORE),
                             (f"pretrain k-NN {metric}, trained teacher", after, SCORE),
                             (f"pretrain k-NN {metric} gain", gain, GAIN)):
        rows.add(key, value, kind, (2,))


def _modality_csv(path: Path) -> dict[str, Any] | None:
    """A report rebuilt from a ``*_modalities.csv`` table, for an eval folder whose JSON is missing."""
    if not path.is_file():
        return None
    try:
        rows = list(csv.DictReader(path.open(newline="")))
    except (OSError, csv.Error) as err:
        log.warning("%s: not readable as CSV (%s); its results stay blank", path, err)
        return None
    results = {}
    for row in rows:
        if row.get("modalities"):
            results[row["modalities"]] = {m: float(v) for m, v in row.items()
                                          if m not in ("input", "modalities") and _is_float(v)}
    return {"results": results} if results else None


def _is_float(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _eval_folders(run_dir: Path) -> list[Path]:
    """``eval/`` first (the default of ``geodino eval``), then ``eval_random_init/`` and any other
    ``eval*`` folder, by name."""
    found = [p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("eval")]
    return sorted(found, key=lambda p: (p.name != "eval", p.name))


def _eval_reports(run_dir: Path, rows: _Rows, eval_settings: dict) -> None:
    for folder in _eval_folders(run_dir):
        for protocol in PROTOCOLS:
            report = _read_json(folder / f"{protocol}.json")
            if report is None or not isinstance(report.get("results"), dict):
                report = _modality_csv(folder / f"{protocol}_modalities.csv")
            if report is None:
                continue
            # How the report was made (labels, data, label fraction, k ...): shown when it differs
            # between runs, since scores from different protocols do not compare.
            made = {k: report[k] for k in ("labels", "train", "val") if k in report}
            settings = report.get("settings") if isinstance(report.get("settings"), dict) else {}
            made.update({k: v for k, v in flatten_dict(settings).items() if k != "cache_dir"})
            eval_settings.update({f"{folder.name}/{protocol}.{k}": v for k, v in made.items()})
            for choice, values in report["results"].items():
                if not isinstance(values, dict):
                    continue
                metric = _headline(values, report.get("task"))
                if metric is not None:
                    key = f"{folder.name} {protocol} {choice} {metric}"
                    rank = (3, folder.name != "eval", folder.name, PROTOCOLS.index(protocol))
                    rows.add(key, _number(values.get(metric)), SCORE, rank)


def _segmentation(run_dir: Path, own: dict[str, Any] | None, rows: _Rows) -> None:
    """mIoU of the run itself (a fine-tuning run) or of fine-tuning runs written inside it."""
    if own is not None and "miou" in own:
        rows.add("seg mIoU", _number(own.get("miou")), SCORE, (4,))
        return
    for path in sorted([*run_dir.glob("*/metrics.json"), *run_dir.glob("*/*/metrics.json")]):
        metrics = _read_json(path)
        if metrics is not None and "miou" in metrics:
            key = f"seg mIoU ({path.parent.relative_to(run_dir).as_posix()})"
            rows.add(key, _number(metrics.get("miou")), SCORE, (4,))


def collect_run(run_dir: str | Path) -> dict[str, Any]:
    """Everything one run folder says about itself.

    Returns ``path``, ``name`` (the folder's name), ``kind`` (``pretrain`` or ``segmentation``),
    ``settings`` (the flattened recipe without bookkeeping keys), ``eval_settings`` (how its
    evaluation reports were made), ``results`` (ordered ``{row: value or None}``) and ``kinds``
    (``{row: "count" | "loss" | "score" | "gain"}``) and ``ranks`` (``{row: sort key}``).
    """
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.suffix == ".pt":  # a checkpoint, as `geodino eval` takes it
        run_dir = run_dir.parent
    config = read_config(run_dir)
    settings = {k: v for k, v in flatten_dict(config).items() if k not in BOOKKEEPING}
    summary = _read_json(run_dir / "summary.json") or {}
    seg_metrics = _read_json(run_dir / "metrics.json")
    segmentation = "pretrained" in config["model"] or (seg_metrics is not None and "miou" in seg_metrics)
    records = _read_jsonl(run_dir / "metrics.jsonl")
    rows = _Rows()

    steps = _number(summary.get("steps"))
    if steps is None and seg_metrics is not None:
        steps = _number(seg_metrics.get("steps"))
    if steps is None and records:  # a run still going (or killed): its last logged step
        steps = max((_number(r.get("step")) or 0.0 for r in records), default=None)
    losses = [r["loss"] for r in records if _number(r.get("loss")) is not None]
    loss = _number(summary.get("final_loss"))
    if loss is None and losses:
        loss = float(losses[-1])
    rows.add("steps", int(steps) if steps is not None else None, COUNT, (0,))
    rows.add("final loss", loss, LOSS, (1,))

    eval_settings: dict[str, Any] = {}
    if not segmentation:
        _pretrain_knn(_read_json(run_dir / "knn.json"), rows)
        _eval_reports(run_dir, rows, eval_settings)
    _segmentation(run_dir, seg_metrics if segmentation else None, rows)
    return {"path": str(run_dir), "name": run_dir.resolve().name or str(run_dir),
            "kind": "segmentation" if segmentation else "pretrain", "settings": settings,
            "eval_settings": eval_settings, "results": rows.values, "kinds": rows.kinds, "ranks": rows.ranks}


# -- comparing runs -------------------------------------------------------------------------------
def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _in_order(dicts: Iterable[dict[str, Any]]) -> list[str]:
    """Keys in the order they first appear across the runs."""
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """The folder names, with as many parent folders as it takes to tell every run apart."""
    parts = [p.resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]  # the same folder given twice


def compare_runs(run_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """The runs side by side.

    Returns ``runs`` (what :func:`collect_run` says of each, with a ``name`` that tells them
    apart), ``settings`` (``{key: [value per run]}``, only keys whose values differ; None where a
    run lacks the key), ``results`` (``{row: [value per run]}``, every row any run has; None where
    a run lacks it) and ``kinds`` (``{row: kind}``).
    """
    if not run_dirs:
        raise ValueError("no run folders to compare")
    runs = [collect_run(p) for p in run_dirs]
    for run, name in zip(runs, _unique_names([Path(r["path"]) for r in runs])):
        run["name"] = name
    settings: dict[str, list[Any]] = {}
    for key in _in_order(r["settings"] for r in runs):
        values = [r["settings"].get(key) for r in runs]
        present = [key in r["settings"] for r in runs]
        if not all(present) or any(not _same(v, values[0]) for v in values[1:]):
            settings[key] = values
    # A report's settings exist only where the report does: a run evaluated and a run not yet
    # evaluated differ in scores, not in how they were evaluated.
    for key in _in_order(r["eval_settings"] for r in runs):
        values = [r["eval_settings"].get(key) for r in runs]
        have = [v for r, v in zip(runs, values) if key in r["eval_settings"]]
        if any(not _same(v, have[0]) for v in have[1:]):
            settings[key] = values
    kinds = {k: v for r in runs for k, v in r["kinds"].items()}
    ranks = {k: v for r in runs for k, v in r["ranks"].items()}
    # The same section order for every comparison; within a section, the order the runs report.
    rows = sorted(_in_order(r["results"] for r in runs), key=lambda k: ranks[k])
    results = {key: [r["results"].get(key) for r in runs] for key in rows}
    return {"runs": runs, "settings": settings, "results": results, "kinds": kinds}


# -- writing --------------------------------------------------------------------------------------
def show_setting(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def show_result(value: Any, kind: str, csv_cell: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if kind == COUNT:
        return str(int(value))
    if csv_cell:  # full precision for whoever reads the CSV back into a program
        return f"{value:.6g}" if kind == LOSS else f"{value:.4f}"
    if kind == LOSS:
        return f"{value:.4f}"
    return f"{value:+.2f}" if kind == GAIN else f"{value:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(comparison: dict[str, Any]) -> str:
    """One table, a column per run: the settings that differ, then the results."""
    runs = comparison["runs"]
    blank = [""] * len(runs)
    lines = ["| | " + " | ".join(_cell(r["name"]) for r in runs) + " |",
             "| --- | " + " | ".join(["---:"] * len(runs)) + " |"]

    def row(label: str, cells: Sequence[str]) -> None:
        lines.append(f"| {_cell(label)} | " + " | ".join(_cell(c) for c in cells) + " |")

    if len(runs) > 1:
        row("**settings that differ**", blank)
        for key, values in comparison["settings"].items():
            row(f"`{key}`", [show_setting(v) for v in values])
        if not comparison["settings"]:
            row("(none)", blank)
        row("**results**", blank)
    for key, values in comparison["results"].items():
        row(key, [show_result(v, comparison["kinds"][key]) for v in values])
    return "\n".join(lines) + "\n"


def to_csv(comparison: dict[str, Any]) -> str:
    """A row per run: name, path, kind, the settings that differ, then the results."""
    settings, results, kinds = comparison["settings"], comparison["results"], comparison["kinds"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "path", "kind", *settings, *results])
    for i, run in enumerate(comparison["runs"]):
        writer.writerow([run["name"], run["path"], run["kind"],
                         *(show_setting(values[i]) for values in settings.values()),
                         *(show_result(values[i], kinds[key], csv_cell=True) for key, values in results.items())])
    return buffer.getvalue()


def bar_chart(comparison: dict[str, Any], out: str | Path, title: str = "") -> Path:
    """A group of bars per score (percentages: k-NN, linear probe, mIoU), a bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = comparison["runs"]
    scores = [k for k, values in comparison["results"].items()
              if comparison["kinds"][k] == SCORE and any(v is not None for v in values)]
    groups = max(len(scores), 1)
    # Wide enough for each bar's value label (about 0.4 in each) up to a size a screen still shows.
    width_in = min(30.0, max(5.0, 1.5 + groups * max(0.6, 0.4 * len(runs))))
    fig, ax = plt.subplots(figsize=(width_in, 4.8))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        values = [comparison["results"][k][i] for k in scores]
        heights = [math.nan if v is None else v for v in values]
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(scores))]
        bars = ax.bar(xs, heights, width, label=run["name"])
        ax.bar_label(bars, labels=["" if v is None else f"{v:.1f}" for v in values], fontsize=6.5)
    if scores:
        ax.set_xticks(range(len(scores)), scores, rotation=30, ha="right", fontsize=8)
    else:
        ax.set_xticks([])
        ax.text(0.5, 0.5, "no scores in these runs yet", ha="center", va="center", transform=ax.transAxes,
                color="grey")
    ax.set_ylabel("%")
    ax.set_ylim(0, 110)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
    return Path(out)


def write_comparison(comparison: dict[str, Any], out_dir: str | Path) -> dict[str, str]:
    """``compare.md``, ``compare.csv`` and ``compare.png`` under ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    paths = {"md": out_dir / "compare.md", "csv": out_dir / "compare.csv", "png": out_dir / "compare.png"}
    write_text_atomic(paths["md"], to_markdown(comparison))
    write_text_atomic(paths["csv"], to_csv(comparison))
    bar_chart(comparison, paths["png"], title=" vs ".join(r["name"] for r in comparison["runs"])[:120])
    return {k: str(v) for k, v in paths.items()}


def to_json(comparison: dict[str, Any]) -> dict[str, Any]:
    """The comparison as plain JSON: per run, its differing settings and its results (null = missing)."""
    runs = []
    for i, run in enumerate(comparison["runs"]):
        runs.append({"name": run["name"], "path": run["path"], "kind": run["kind"],
                     "settings": {k: v[i] for k, v in comparison["settings"].items()},
                     "results": {k: v[i] for k, v in comparison["results"].items()}})
    return {"runs": runs, "differing_settings": list(comparison["settings"]), "kinds": comparison["kinds"]}
