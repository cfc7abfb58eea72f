"""``geodino bench pays``: does pretraining pay on worlds nobody tuned it on?

For every held-out world (:mod:`geodino.bench.worlds`) and seed it writes the world as shards, then
scores, on the val split with the train split as memory bank / probe training set (micro-mAP):

- the **mean spectrum**: each patch's per-band means in the network's standardised units (the
  card's statistics; a hidden modality filled with 0, the band mean, as the networks get it),
  with the same cosine k-NN and the same linear probe as the networks;
- the **random init**: the backbone of the recipe as pretraining initialises it
  (``EvalOptions(random_init=True)`` of the first budget's checkpoint, which only carries the recipe:
  the initial weights depend on the architecture and ``run.seed``, not on the schedule);
- the **pretrained** teacher after each step budget (``--steps``).

Each budget is its own pretraining run whose schedule ends at that budget (10 epochs of
``budget / 10`` steps, the recipe's share of warm-up), so a budget is a complete short run, not the
middle of a longer one. Runs live in ``<out>/runs/<world>-seed<seed>-<size>px-n<train>/steps<N>``
and resume from their checkpoint when the bench is run again; evaluation scores are kept beside
them, keyed by the weights (the checkpoint file; for random init, the recipe), the card and the
evaluation settings, so an interrupted bench continues where it stopped.

Default recipe: ``bigearthnet_dinomm_vits8`` with ViT-Tiny/8 at 48 px (2 global + 4
local crops of 24 px), batch 32 and the short-run settings of issue 13 (:data:`SHORT_RUN`), then
``--set key=value`` overrides. Writes ``pays.json``, ``pays.md`` and ``pays.png`` into ``--out``
and prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from geodino.bench import cpu_model
from geodino.config.schema import number
from geodino.eval.linear import LR_GRID
from geodino.utils import comma_list, save_figure, write_json_atomic, write_text_atomic

log = logging.getLogger("geodino")

DEFAULT_RECIPE = "bigearthnet_dinomm_vits8"
METRIC = "map_micro"
# The setting issue 13 reported: ViT-Tiny/8 at 48 px with 2 global + 4 local crops, batch 32, and
# the settings that make a run of a few hundred steps move at all.
SHORT_RUN = (
    "model.arch=vit_tiny_patch16_224", "model.patch_size=8", "augment.global_size=48",
    "augment.local_size=24", "augment.n_local=4", "data.batch_size=32",
    "optim.lr=0.0016", "dino.teacher_temp=0.02", "optim.momentum_teacher=0.99",
    "optim.freeze_last_layer=0", "model.out_dim=4096",
)
# Settings that change how a run is executed here, not what it learns: no loader worker processes
# (2-core machines; the patches are small), no k-NN check inside pretraining (the bench scores
# every run itself), checkpoints often enough that an interrupted run loses little, and the
# teacher's entropy logged often enough to see a dip toward one-prototype collapse.
HARNESS = ("data.num_workers=0", "eval.knn=false", "train.checkpoint_every=50", "train.log_every=10")
# A budget of N steps is one run of this many epochs (or the largest divisor of N below it).
BUDGET_EPOCHS = 10


@dataclass
class PaysSettings:
    out: str = "runs/pays"
    worlds: list[str] = field(default_factory=lambda: ["mixtures", "patterns", "radar"])
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: list[int] = field(default_factory=lambda: [250, 1000])
    modalities: list[str] = field(default_factory=lambda: ["s2", "s1", "s2+s1"])
    probes: list[str] = field(default_factory=lambda: ["knn", "linear"])
    recipe: str = DEFAULT_RECIPE
    overrides: list[str] = field(default_factory=list)  # --set, applied after SHORT_RUN and HARNESS
    # Names a set of overrides: its runs and outputs get their own names beside the others, on the
    # same worlds and the same random-init scores (which only depend on the architecture and seed).
    variant: str = ""
    size: int = 48
    train_samples: int = 2048
    val_samples: int = 512
    shard_size: int = 256
    k: int = 20
    temperature: float = 0.07
    linear_epochs: int = 100
    # Candidate probe rates, chosen on held-out training samples (geodino.eval.linear.choose_lr).
    linear_lrs: tuple[float, ...] = LR_GRID
    linear_avgpool: bool = False  # add the mean of the last block's patch tokens to the CLS tokens
    eval_batch_size: int = 64
    progress: bool = True


# ------------------------------------------------------------------------------ the mean spectrum
def band_means(labelled) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample band means ``[N, C]`` (raw units, float64) and the labels of a
    :class:`~geodino.data.labelled.LabelledSet`, in its order."""
    means, labels = [], []
    for sample in labelled.dataset:
        means.append(sample["image"].double().mean(dim=(-2, -1)))
        labels.append(sample[labelled.label_key])
    return torch.stack(means), torch.stack(labels)


def mean_spectrum_features(means: torch.Tensor, card, choice: str, fill: float = 0.0) -> torch.Tensor:
    """The mean-spectrum feature of each sample for a modality choice: band means standardised
    with the card (the mean of the standardised image the network gets), hidden bands = ``fill``."""
    from geodino.augment.modality import apply_modality_choice
    from geodino.eval.features import ALL_BANDS

    mean = torch.tensor(card.mean, dtype=torch.float64)
    std = torch.tensor(card.std, dtype=torch.float64)
    z = ((means - mean) / std)[..., None, None]
    if choice != ALL_BANDS:
        z = apply_modality_choice(z, card.modalities, choice, fill)
    return z[..., 0, 0].float()


def mean_spectrum_scores(train_means: torch.Tensor, train_labels: torch.Tensor, val_means: torch.Tensor,
                         val_labels: torch.Tensor, card, choices: list[str], probes: list[str], k: int = 20,
                         temperature: float = 0.07, linear_epochs: int = 100,
                         linear_lrs: tuple[float, ...] = LR_GRID) -> dict[str, dict[str, Any]]:
    """``{probe: {choice: scores}}`` of the mean spectrum, with the networks' k-NN and probe."""
    from geodino.eval.knn import knn_evaluate
    from geodino.eval.linear import ProbeSettings, linear_probe

    out: dict[str, dict[str, Any]] = {p: {} for p in probes}
    for choice in choices:
        train_f = mean_spectrum_features(train_means, card, choice)
        val_f = mean_spectrum_features(val_means, card, choice)
        if "knn" in probes:
            out["knn"][choice] = knn_evaluate(train_f, train_labels, val_f, val_labels, k, temperature)
        if "linear" in probes:
            out["linear"][choice] = linear_probe(train_f, train_labels, val_f, val_labels,
                                                 ProbeSettings(epochs=linear_epochs, lrs=linear_lrs))
    return out


# -------------------------------------------------------------------------------------- budgets
def budget_overrides(steps: int, batch_size: int, warmup_share: float) -> list[str]:
    """Recipe keys that make a run of exactly ``steps`` steps a complete schedule (one process)."""
    if steps < 1:
        raise ValueError(f"a step budget must be at least 1, got {steps}")
    epochs = max(d for d in range(1, BUDGET_EPOCHS + 1) if steps % d == 0)
    return [f"optim.epochs={epochs}", f"optim.warmup_epochs={round(epochs * warmup_share)}",
            f"data.samples_per_epoch={steps // epochs * batch_size}", f"run.max_steps={steps}"]


def run_config(s: PaysSettings, shards: Path, run_dir: Path, seed: int, steps: int):
    """The pretraining recipe of one budget: recipe ← SHORT_RUN ← HARNESS ← --set ← the budget."""
    from geodino.config import load_config

    common = [*SHORT_RUN, *HARNESS, f"data.root={shards}", f"run.out_dir={run_dir}", f"run.seed={seed}"]
    if not s.progress:
        common.append("train.progress=false")
    base = load_config(s.recipe, [*common, *s.overrides])
    warmup_share = base.optim.warmup_epochs / base.optim.epochs
    return load_config(s.recipe, [*common, *s.overrides,
                                  *budget_overrides(steps, base.data.batch_size, warmup_share)])


def _checkpoint_step(path: Path) -> int:
    if not path.is_file():
        return 0
    from geodino.runs.checkpoint import load_checkpoint

    return int(load_checkpoint(path).get("step", 0))


def pretrain_budget(s: PaysSettings, shards: Path, run_dir: Path, seed: int, steps: int) -> dict[str, Any]:
    """Run (or resume, or just confirm) the pretraining of one budget; the seconds spent training
    are added up across interrupted invocations in ``pays_time.json``."""
    from geodino.runs.checkpoint import CHECKPOINT_NAME
    from geodino.engine.pretrain import pretrain

    cfg = run_config(s, shards, run_dir, seed, steps)
    checkpoint = run_dir / CHECKPOINT_NAME
    before = _checkpoint_step(checkpoint)
    timing_path = run_dir / "pays_time.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {"pretrain_s": 0.0, "steps_timed": 0}
    if before < steps:
        log.info("pretraining %s for %d steps (from step %d)", run_dir, steps, before)
    started = time.perf_counter()
    summary = pretrain(cfg)  # a finished run only re-checks its recipe and rewrites its summary
    if before < steps:
        timing["pretrain_s"] += time.perf_counter() - started
        timing["steps_timed"] += int(summary["steps"]) - before
        write_json_atomic(timing_path, timing)
    return {"checkpoint": str(checkpoint), "steps": int(summary["steps"]), "final_loss": summary.get("final_loss"),
            **entropy_dip(run_dir / "metrics.jsonl"),
            "pretrain_s": round(timing["pretrain_s"], 1),
            "s_per_step": round(timing["pretrain_s"] / timing["steps_timed"], 3) if timing["steps_timed"] else None}


def entropy_dip(metrics: Path) -> dict[str, Any]:
    """The teacher's lowest logged entropy, its step, and ln K: how close the run came to one-prototype
    collapse (a dip that recovers is invisible in the final figures)."""
    from geodino.runs.metrics import MetricsLog

    rows = [r for r in MetricsLog(metrics).read() if r.get("teacher_entropy") is not None]
    if not rows:
        return {}
    low = min(rows, key=lambda r: r["teacher_entropy"])
    return {"min_teacher_entropy": round(low["teacher_entropy"], 3), "min_entropy_step": low["step"],
            "final_teacher_entropy": round(rows[-1]["teacher_entropy"], 3), "log_k": round(low["log_k"], 3)}


# ---------------------------------------------------------------------------------- evaluation
def init_identity(checkpoint: Path) -> dict[str, Any]:
    """What the random-init weights of a checkpoint's recipe depend on (the architecture, the crop
    size it is built for, the seed), so that every budget's checkpoint shares one baseline score."""
    from geodino.runs.checkpoint import load_checkpoint

    cfg = load_checkpoint(checkpoint)["config"]
    return {"model": cfg["model"], "global_size": cfg["augment"]["global_size"], "seed": cfg["run"]["seed"]}


def evaluate(s: PaysSettings, checkpoint: Path, shards: Path, out_dir: Path, random_init: bool) -> dict[str, Any]:
    """``{probe: {choice: scores}}`` of a checkpoint's teacher (or of its recipe's random init),
    read from ``out_dir/pays_scores.json`` when the same weights were scored the same way on the
    same data: the same checkpoint file (random init: the same recipe) and card."""
    from geodino.data.shards.format import CARD_FILE
    from geodino.eval.features import file_identity
    from geodino.eval.protocols import EvalData, EvalOptions, LinearSettings, knn_eval, linear_eval

    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = EvalData(train=str(shards), val=str(shards))
    options = EvalOptions(modalities=list(s.modalities), batch_size=s.eval_batch_size, device=device,
                          progress=s.progress, random_init=random_init)
    cache_path = out_dir / "pays_scores.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    weights = init_identity(checkpoint) if random_init else file_identity(checkpoint)
    results = {}
    for probe in s.probes:
        identity = {"probe": probe, "weights": weights, "random_init": random_init,
                    # by content: rewriting the shards' folder rewrites an identical card
                    "card": hashlib.sha1((shards / CARD_FILE).read_bytes()).hexdigest(),
                    "modalities": list(s.modalities), "k": s.k, "temperature": s.temperature,
                    "linear_epochs": s.linear_epochs if probe == "linear" else None}
        if probe == "linear" and (s.linear_lrs != (1e-3,) or s.linear_avgpool):
            # only when not the old fixed rate, so that scores kept before these options existed still match
            identity.update(linear_lr=_rates_identity(s.linear_lrs), linear_avgpool=s.linear_avgpool)
        key = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        if key not in cache:
            started = time.perf_counter()
            if probe == "knn":
                report = knn_eval(checkpoint, data, options, k=s.k, temperature=s.temperature, out_dir=out_dir)
            else:
                report = linear_eval(checkpoint, data, options,
                                     LinearSettings(epochs=s.linear_epochs, lrs=s.linear_lrs, avgpool=s.linear_avgpool),
                                     out_dir=out_dir)
            cache[key] = {"identity": identity, "results": report["results"],
                          "eval_s": round(time.perf_counter() - started, 1)}
            write_json_atomic(cache_path, cache)
        results[probe] = cache[key]["results"]
    return results


def measure_world(s: PaysSettings, world: str, seed: int) -> dict[str, Any]:
    """Every score of one world and seed: mean spectrum, random init, each budget."""
    from geodino.bench.worlds import write_world
    from geodino.data.card import DatasetCard
    from geodino.data.shards.format import CARD_FILE
    from geodino.eval.data import open_labelled_set

    out = Path(s.out)
    # The folder names what the data are, so that another size or sample count never resumes (or
    # reuses the scores of) runs on other data.
    name = f"{world}-seed{seed}-{s.size}px-n{s.train_samples}"
    shards = out / "worlds" / name
    started = time.perf_counter()
    write_world(shards, world, seed=seed, size=s.size, train_samples=s.train_samples, val_samples=s.val_samples,
                shard_size=s.shard_size, progress=s.progress)
    card = DatasetCard.load(shards / CARD_FILE)
    bank = open_labelled_set(str(shards), "train", card, {})
    queries = open_labelled_set(str(shards), "val", card, {}, label=bank.label_key)
    train_means, train_y = band_means(bank)
    val_means, val_y = band_means(queries)
    mean_spectrum = mean_spectrum_scores(train_means, train_y, val_means, val_y, card, s.modalities, s.probes,
                                         s.k, s.temperature, s.linear_epochs, s.linear_lrs)
    label_share = float(val_y.float().mean())  # the chance level of micro-mAP: the share of positives

    runs, pretrained, random_init = {}, {}, None
    for steps in sorted(s.steps):
        run_dir = out / "runs" / name / (f"steps{steps}-{s.variant}" if s.variant else f"steps{steps}")
        runs[steps] = pretrain_budget(s, shards, run_dir, seed, steps)
        checkpoint = Path(runs[steps]["checkpoint"])
        pretrained[steps] = evaluate(s, checkpoint, shards, run_dir / "pays_eval", random_init=False)
        if random_init is None:
            random_init = evaluate(s, checkpoint, shards, out / "runs" / name / "random_init", random_init=True)

    rows = []
    for probe in s.probes:
        for choice in s.modalities:
            rows.append({
                "world": world, "seed": seed, "probe": probe, "input": choice,
                "mean_spectrum": mean_spectrum[probe][choice][METRIC],
                "random_init": random_init[probe][choice][METRIC] if random_init else None,
                "pretrained": {str(n): pretrained[n][probe][choice][METRIC] for n in sorted(pretrained)},
            })
    return {"world": world, "seed": seed, "shards": str(shards), "classes": len(card.classes),
            "train_samples": len(train_y), "val_samples": len(val_y), "chance_map_micro": 100 * label_share,
            "runs": {str(n): r for n, r in runs.items()}, "rows": rows,
            "wall_s": round(time.perf_counter() - started, 1)}


# ------------------------------------------------------------------------------------- outputs
def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


PROBE_NAMES = {"knn": "k-NN", "linear": "linear"}
INPUT_NAMES = {"s2": "S2", "s1": "S1", "s2+s1": "S2+S1", "s1+s2": "S1+S2"}


def markdown_table(report: dict[str, Any]) -> str:
    """Rows of world × seed × probe × input; each budget's cell also gives its gain over random init."""
    budgets = [str(n) for n in report["settings"]["steps"]]
    head = ["world", "seed", "probe", "input", "mean spectrum", "random init", *[f"{n} steps" for n in budgets]]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for world in report["worlds"]:
        for row in world["rows"]:
            cells = [row["world"], str(row["seed"]), PROBE_NAMES.get(row["probe"], row["probe"]),
                     INPUT_NAMES.get(row["input"], row["input"]), _fmt(row["mean_spectrum"]), _fmt(row["random_init"])]
            for n in budgets:
                score, baseline = row["pretrained"].get(n), row["random_init"]
                gain = f" ({score - baseline:+.1f})" if score is not None and baseline is not None else ""
                cells.append(_fmt(score) + gain)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _rates_identity(rates: tuple[float, ...]) -> float | list[float]:
    return rates[0] if len(rates) == 1 else list(rates)


def _rates_text(settings: dict[str, Any]) -> str:
    """The probe rate as a report states it; reports written before the choice existed had one."""
    rates = settings.get("linear_lrs", [settings.get("linear_lr", 1e-3)])
    if len(rates) == 1:
        return f"lr {rates[0]:g}"
    return "the lr (of " + ", ".join(f"{v:g}" for v in rates) + ") that scored best on 20% of the train split held out"


def markdown_report(report: dict[str, Any]) -> str:
    st = report["settings"]
    lines = [
        "# Does pretraining pay? (held-out worlds)", "",
        f"micro-mAP (%) on the val split ({st['val_samples']} patches), memory bank / probe training set = "
        f"train split ({st['train_samples']} patches), {st['size']} px; k-NN k={st['k']}, T={st['temperature']}; "
        f"linear probe {st['linear_epochs']} epochs at {_rates_text(st)} on the last blocks' CLS tokens"
        + (" and the mean patch token" if st.get("linear_avgpool") else "") + ". Mean spectrum: per-band means "
        "in standardised units, same k-NN and probe. In brackets: gain over random init.", "",
        f"Recipe: `{st['recipe']}` + `{' '.join(SHORT_RUN)}` + `{' '.join(HARNESS)}`"
        + (f" + `{' '.join(st['overrides'])}`" if st["overrides"] else "") + "; each budget a complete schedule of "
        f"that many steps. CPU: {report['cpu']}, {report['threads']} threads.", "",
        markdown_table(report),
        "| world | seed | chance (share of positive labels) | pretraining s/step per budget | teacher entropy: "
        "lowest (step) → final, ln K |",
        "| --- | --- | --- | --- | --- |",
    ]
    for w in report["worlds"]:
        timing = ", ".join(f"{n}: {_fmt(r['s_per_step'])}" for n, r in w["runs"].items())
        dips = ", ".join(f"{n}: {r['min_teacher_entropy']:.2f} ({r['min_entropy_step']}) → "
                         f"{r['final_teacher_entropy']:.2f}, {r['log_k']:.2f}"
                         for n, r in w["runs"].items() if "min_teacher_entropy" in r)
        lines.append(f"| {w['world']} | {w['seed']} | {w['chance_map_micro']:.1f} | {timing} | {dips or '—'} |")
    return "\n".join(lines) + "\n"


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Score against steps per world/seed (rows) and probe (columns): pretrained as lines, random
    init dashed and mean spectrum dotted, one colour per input."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = report["settings"]
    budgets = list(st["steps"])
    panels = [(w, p) for w in report["worlds"] for p in st["probes"]]
    n_rows, n_cols = len(report["worlds"]), len(st["probes"])
    legend_in = 0.2 * (len(st["modalities"]) + 1)  # a legend row per modality: pretrained, random, mean
    height = 3.2 * n_rows + legend_in
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, height), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (world, probe) in enumerate(panels):
        ax = axes[i // n_cols][i % n_cols]
        rows = [r for r in world["rows"] if r["probe"] == probe]
        for j, row in enumerate(rows):
            colour = colours[j % len(colours)]
            label = INPUT_NAMES.get(row["input"], row["input"])
            ax.plot(budgets, [row["pretrained"].get(str(n), math.nan) for n in budgets], "o-", color=colour,
                    label=f"{label} pretrained")
            if row["random_init"] is not None:
                ax.axhline(row["random_init"], color=colour, linestyle="--", linewidth=1, label=f"{label} random init")
            ax.axhline(row["mean_spectrum"], color=colour, linestyle=":", linewidth=1, label=f"{label} mean spectrum")
        if len(budgets) > 1:
            ax.set_xscale("log")
            ax.minorticks_off()  # the budgets are the only ticks worth reading
        ax.set_xticks(budgets, [str(n) for n in budgets])
        ax.set_title(f"{world['world']} (seed {world['seed']}), {PROBE_NAMES.get(probe, probe)}", fontsize=9)
        ax.set_xlabel("pretraining steps")
        ax.set_ylabel("micro-mAP (%)")
        ax.grid(alpha=0.3)
    # One legend under the panels: inside them it would hide the curves.
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(st["modalities"]), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, legend_in / height, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)


def write_outputs(report: dict[str, Any], out: Path) -> dict[str, str]:
    stem = f"pays-{report['settings']['variant']}" if report["settings"].get("variant") else "pays"
    files = {ext: out / f"{stem}.{ext}" for ext in ("json", "md", "png")}
    out.mkdir(parents=True, exist_ok=True)
    report["files"] = {k: str(v) for k, v in files.items()}
    write_json_atomic(files["json"], report)
    write_text_atomic(files["md"], markdown_report(report))
    plot_report(report, files["png"])
    return report["files"]


def measure(s: PaysSettings) -> dict[str, Any]:
    """Every world × seed; the outputs are rewritten after each, so an interrupted bench leaves
    what it measured so far."""
    from geodino.bench.worlds import get_world

    for world in s.worlds:
        get_world(world)  # an unknown name fails now, not after an hour of another world
    unknown = [p for p in s.probes if p not in PROBE_NAMES]
    if unknown or not s.probes:
        raise ValueError(f"--probe takes {', '.join(PROBE_NAMES)}, got {s.probes}")
    if s.variant and not re.fullmatch(r"[A-Za-z0-9_.+-]+", s.variant):
        raise ValueError(f"--variant names folders and files: letters, digits and _.+- only, got {s.variant!r}")
    if not s.steps or min(s.steps) < 1:
        raise ValueError(f"--steps needs budgets of at least 1 step, got {s.steps}")
    for steps in s.steps:  # the recipe, --set and every budget load now, not after the data are made
        run_config(s, Path(s.out) / "worlds" / "unwritten", Path(s.out) / "runs" / "unwritten", 0, steps)
    started = time.perf_counter()
    report: dict[str, Any] = {"bench": "pays", "metric": METRIC, "settings": asdict(s), "cpu": cpu_model(),
                              "threads": torch.get_num_threads(), "worlds": []}
    report["settings"]["steps"] = sorted(s.steps)
    for world in s.worlds:
        for seed in s.seeds:
            report["worlds"].append(measure_world(s, world, seed))
            report["wall_s"] = round(time.perf_counter() - started, 1)
            write_outputs(report, Path(s.out))
    return report


# ------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = PaysSettings()
    parser.add_argument("--out", default=d.out, help=f"output folder: worlds, runs, pays.json/md/png (default {d.out})")
    parser.add_argument("--worlds", default=",".join(d.worlds), help="comma-separated worlds (default: all three)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds: the world's and the run's (default 0)")
    parser.add_argument("--steps", default="250,1000", help="comma-separated step budgets (default 250,1000)")
    parser.add_argument("--modalities", default=",".join(d.modalities), help="inputs to score (default s2,s1,s2+s1)")
    parser.add_argument("--probe", default="knn,linear", help="knn, linear or both (default knn,linear)")
    parser.add_argument("--recipe", default=d.recipe, help=f"pretraining recipe (default {d.recipe})")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="recipe overrides applied after the short-run settings, e.g. model.depth=1")
    parser.add_argument("--variant", default=d.variant,
                        help="name of this set of --set overrides: runs go to steps<N>-<variant> and outputs to "
                             "pays-<variant>.json/md/png, beside the other variants' on the same worlds")
    parser.add_argument("--size", type=number(int, ge=8), default=d.size, help=f"patch size in px (default {d.size})")
    parser.add_argument("--train-samples", type=number(int, ge=1), default=d.train_samples,
                        help=f"patches in the train split (default {d.train_samples})")
    parser.add_argument("--val-samples", type=number(int, ge=1), default=d.val_samples,
                        help=f"patches in the val split (default {d.val_samples})")
    parser.add_argument("--k", type=number(int, ge=1), default=d.k, help=f"k-NN neighbours (default {d.k})")
    parser.add_argument("--linear-epochs", type=number(int, ge=1), default=d.linear_epochs,
                        help=f"linear probe epochs (default {d.linear_epochs})")
    parser.add_argument("--linear-lr", default=",".join(f"{v:g}" for v in d.linear_lrs), metavar="LR[,LR...]",
                        help="linear probe learning rate, or several to choose from on held-out training samples "
                             "(default %(default)s)")
    parser.add_argument("--linear-avgpool", action="store_true",
                        help="linear probe on the last blocks' CLS tokens plus the mean of the last block's patch tokens")
    parser.add_argument("--no-progress", action="store_true")


def settings_from_args(args: argparse.Namespace) -> PaysSettings:
    return PaysSettings(out=args.out, worlds=comma_list(args.worlds, "--worlds"),
                        seeds=comma_list(args.seeds, "--seeds", int), steps=comma_list(args.steps, "--steps", int),
                        modalities=comma_list(args.modalities, "--modalities"),
                        probes=comma_list(args.probe, "--probe"), recipe=args.recipe, overrides=list(args.overrides),
                        variant=args.variant, size=args.size, train_samples=args.train_samples,
                        val_samples=args.val_samples, k=args.k, linear_epochs=args.linear_epochs,
                        linear_lrs=tuple(comma_list(args.linear_lr, "--linear-lr", float)),
                        linear_avgpool=args.linear_avgpool, progress=not args.no_progress)


def run(args: argparse.Namespace) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = measure(settings_from_args(args))
    line = {k: report[k] for k in ("bench", "metric", "cpu", "threads", "wall_s", "files")}
    line["settings"] = {k: report["settings"][k] for k in ("worlds", "seeds", "steps", "modalities", "probes",
                                                           "overrides", "variant")}
    line["rows"] = [r for w in report["worlds"] for r in w["rows"]]
    line["s_per_step"] = {f"{w['world']}-seed{w['seed']}": {n: r["s_per_step"] for n, r in w["runs"].items()}
                          for w in report["worlds"]}
    print(json.dumps(line), flush=True)
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m geodino.bench.pays", description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
