"""The evaluation protocols behind ``geodino eval``: k-NN and linear probe of a checkpoint's teacher,
optionally repeated with sensors hidden (the missing-modality table).

Both protocols train and test under the same input condition: for "SAR only" the memory bank (or
the probe's training set) and the queries all have their optical bands filled with the band mean.
Results go to ``<out>/knn.json`` / ``<out>/linear.json`` and, with modality choices, to the
``*_modalities.{csv,md,png}`` table. With ``EvalOptions.random_init`` the same protocols score the
checkpoint recipe's untrained backbone instead (the baseline); reports say which backbone they scored.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from geodino.eval.checkpoint import load_random_backbone, load_teacher_backbone, random_init_name
from geodino.eval.data import LabelledSet, check_eval_data, open_labelled_set, subsample_indices
from geodino.eval.features import (
    ALL_BANDS,
    cache_key,
    cached,
    cls_embedding,
    extract_feature_sets,
    file_identity,
    probe_embedding,
)
from geodino.eval.linear import LR_GRID
from geodino.data.batches import loader_workers
from geodino.utils import resolve_device, resolve_precision, write_json_atomic

log = logging.getLogger("geodino")

MULTI_LABEL_METRICS = ("map_micro", "map_macro", "f1_micro", "f1_macro")
SINGLE_LABEL_METRICS = ("top1", "top5")


@dataclass
class EvalData:
    """Where the labelled data comes from (see :mod:`geodino.eval.data`)."""

    train: str
    val: str
    label: str = "auto"
    train_split: str | None = None
    val_split: str | None = None
    train_samples: int | None = None  # first N samples (shards) / N scenes (synthetic)
    val_samples: int | None = None
    image_size: int | None = None  # synthetic scenes only; default: the recipe's


@dataclass
class EvalOptions:
    modalities: list[str] = field(default_factory=list)  # e.g. ["s2", "s1", "s2+s1"]; [] = all bands only
    fill: float = 0.0  # standardised value of hidden bands (0 = band mean)
    size: int | None = None  # input size of the backbone; default: the recipe's global crop size
    batch_size: int = 64
    device: str = "auto"  # the GPU when there is one
    precision: str = "auto"  # of the backbone's pass: bf16 on a GPU that has it, else fp32
    workers: int = -1  # loader processes; -1: 4 with a GPU, 0 on the CPU
    card: str | None = None  # override of the checkpoint's dataset card
    progress: bool = True
    random_init: bool = False  # score the recipe's backbone as pretraining initialised it, not the teacher


TRAINED_BACKBONE = "teacher"


def backbone_name(cfg: dict[str, Any], options: EvalOptions) -> str:
    """What the report's ``backbone`` says was scored."""
    return random_init_name(cfg) if options.random_init else TRAINED_BACKBONE


def _sets(checkpoint: str | Path, data: EvalData, options: EvalOptions):
    from geodino.eval.modality_table import check_choices

    options.device = resolve_device(options.device)
    # resolved once, as the device is: the report and the feature cache's key say what ran
    options.precision = resolve_precision(options.precision, options.device)
    options.workers = loader_workers(options.workers, options.device)

    # Splits first (no val split, or the memory bank's own shards as queries: refused), before the
    # checkpoint is loaded or a feature extracted; library callers get the same refusal as the CLI.
    check_eval_data(data.train, data.val, data.train_split, data.val_split)
    load = load_random_backbone if options.random_init else load_teacher_backbone
    backbone, card, cfg = load(checkpoint, options.card, options.device)
    check_choices(options.modalities, list(card.modalities))
    common = dict(label=data.label, image_size=data.image_size)
    train = open_labelled_set(data.train, "train", card, cfg, split=data.train_split,
                              num_samples=data.train_samples, **common)
    val = open_labelled_set(data.val, "val", card, cfg, split=data.val_split, num_samples=data.val_samples,
                            label=train.label_key, image_size=data.image_size)
    if val.label_key != train.label_key:
        raise ValueError(f"train labels {train.label_key!r} and validation labels {val.label_key!r} differ")
    return backbone, card, cfg, train, val


def _choices(options: EvalOptions) -> list[str]:
    return list(options.modalities) or [ALL_BANDS]


def _extract(backbone, labelled: LabelledSet, card, size: int, options: EvalOptions, embed) -> tuple[dict, Any]:
    return extract_feature_sets(backbone, labelled.dataset, card, size, modalities=_choices(options),
                                fill=options.fill, embed=embed, batch_size=options.batch_size,
                                device=options.device, label_key=labelled.label_key, progress=options.progress,
                                workers=options.workers, precision=options.precision)


def _report(protocol: str, checkpoint: str | Path, backbone: str, card, train: LabelledSet, val: LabelledSet,
            results: dict[str, dict[str, Any]], options: EvalOptions, out_dir: Path | None,
            settings: dict[str, Any]) -> dict[str, Any]:
    multi = train.label_key != "label"
    metrics = MULTI_LABEL_METRICS if multi else SINGLE_LABEL_METRICS
    report: dict[str, Any] = {
        "protocol": protocol, "checkpoint": str(checkpoint), "backbone": backbone, "card": card.name,
        "labels": train.label_key,
        "task": "multi-label" if multi else "single-label", "train": train.description, "val": val.description,
        "settings": {**settings, "precision": options.precision, "loader_workers": options.workers},
        "results": results,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if options.modalities:
            from geodino.eval.modality_table import write_modality_table

            fraction = settings.get("label_fraction", 1.0)
            labels = f"{train.label_key}, {100 * fraction:g}% of labels" if fraction < 1 else train.label_key
            name = str(Path(checkpoint).parent.name or checkpoint)
            if backbone != TRAINED_BACKBONE:
                name += f", {backbone}"
            title = f"{protocol}: {name} ({labels})"
            report["modality_table"] = write_modality_table(results, list(card.modalities), metrics, out_dir,
                                                            f"{protocol}_modalities", title)
        write_json_atomic(out_dir / f"{protocol}.json", report)
    return report


def knn_eval(checkpoint: str | Path, data: EvalData, options: EvalOptions | None = None, *, k: int = 20,
             temperature: float = 0.07, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Weighted k-NN of the teacher's CLS features, for every modality choice."""
    from geodino.eval.knn import knn_evaluate

    options = options or EvalOptions()
    backbone, card, cfg, train, val = _sets(checkpoint, data, options)
    size = options.size or cfg["augment"]["global_size"]
    train_f, train_y = _extract(backbone, train, card, size, options, cls_embedding)
    val_f, val_y = _extract(backbone, val, card, size, options, cls_embedding)
    results = {c: knn_evaluate(train_f[c], train_y, val_f[c], val_y, k, temperature, options.device)
               for c in train_f}
    settings = {"k": k, "temperature": temperature, "size": size, "fill": options.fill}
    return _report("knn", checkpoint, backbone_name(cfg, options), card, train, val, results, options,
                   Path(out_dir) if out_dir is not None else None, settings)


@dataclass
class LinearSettings:
    label_fraction: float = 1.0
    n_last_blocks: int = 4
    avgpool: bool = False
    epochs: int = 100
    lrs: tuple[float, ...] = LR_GRID  # several: the probe picks one on held-out training samples
    weight_decay: float = 1e-4
    batch_size: int = 256
    seed: int = 0
    cache_dir: str | None = None


def linear_eval(checkpoint: str | Path, data: EvalData, options: EvalOptions | None = None,
                settings: LinearSettings | None = None, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Linear probe on the concatenated CLS tokens of the last blocks (+ pooled patches), for every
    modality choice; features are cached in ``settings.cache_dir`` when given."""
    from geodino.eval.linear import ProbeSettings, linear_probe

    options = options or EvalOptions()
    s = settings or LinearSettings()
    backbone, card, cfg, train, val = _sets(checkpoint, data, options)
    size = options.size or cfg["augment"]["global_size"]
    n_blocks, avgpool = s.n_last_blocks, s.avgpool
    if not backbone.is_vit:  # a CNN has one embedding: its pooled feature map
        if avgpool or n_blocks != LinearSettings.n_last_blocks:
            log.warning("--n-last-blocks and --avgpool apply to ViTs; %s gives its pooled features alone",
                        backbone_name(cfg, options))
        n_blocks, avgpool = 0, False
    depth = len(getattr(backbone.model, "blocks", ()))
    if depth and n_blocks > depth:
        log.warning("--n-last-blocks %d: the backbone has %d blocks; using all of them", n_blocks, depth)
        n_blocks = depth
    embed = probe_embedding(n_blocks, avgpool)
    identity = {"checkpoint": file_identity(checkpoint), "card": card.to_dict(), "size": size,
                "n_last_blocks": n_blocks, "avgpool": avgpool, "fill": options.fill,
                "modalities": _choices(options), "label": train.label_key,
                "precision": options.precision}
    if options.random_init:  # other weights, same checkpoint file: must not share cached features
        identity["backbone"] = backbone_name(cfg, options)

    def features(labelled: LabelledSet, role: str) -> dict[str, Any]:
        spec = asdict(data)
        key = cache_key(**identity, role=role, data={k: v for k, v in spec.items() if k.startswith(role) or
                                                      k in ("image_size",)})
        return cached(s.cache_dir, f"{role}-{key}",
                      lambda: dict(zip(("features", "labels"), _extract(backbone, labelled, card, size, options,
                                                                         embed))))

    train_set, val_set = features(train, "train"), features(val, "val")
    keep = subsample_indices(len(train_set["labels"]), s.label_fraction, s.seed)
    probe = ProbeSettings(epochs=s.epochs, lrs=s.lrs, weight_decay=s.weight_decay, batch_size=s.batch_size,
                          seed=s.seed)
    results = {}
    for choice, train_f in train_set["features"].items():
        results[choice] = linear_probe(train_f[keep], train_set["labels"][keep], val_set["features"][choice],
                                       val_set["labels"], probe)
    settings_out = {**asdict(s), "lrs": list(s.lrs), "n_last_blocks": n_blocks, "avgpool": avgpool, "size": size,
                    "fill": options.fill,
                    "train_used": int(len(keep))}
    return _report("linear", checkpoint, backbone_name(cfg, options), card, train, val, results, options,
                   Path(out_dir) if out_dir is not None else None, settings_out)


def default_out_dir(checkpoint: str | Path, random_init: bool = False) -> Path:
    """``<checkpoint folder>/eval``; the random-init baseline has a folder of its own so that it
    never overwrites the trained model's reports."""
    return Path(checkpoint).parent / ("eval_random_init" if random_init else "eval")


def format_results(report: dict[str, Any]) -> str:
    """Human-readable lines: one per modality choice."""
    metrics = MULTI_LABEL_METRICS if report["task"] == "multi-label" else SINGLE_LABEL_METRICS
    lines = [f"{report['protocol']} on {report['val']} ({report['labels']}, {report['task']}), "
             f"train: {report['train']}"]
    backbone = report.get("backbone", TRAINED_BACKBONE)
    if backbone != TRAINED_BACKBONE:
        lines[0] += f"; backbone: {backbone}, untrained"
    for choice, values in report["results"].items():
        cells = ", ".join(f"{m} {values[m]:.2f}" for m in metrics if m in values)
        lines.append(f"  {choice:>8}: {cells}")
    table = report.get("modality_table")
    if table:
        lines += ["", table["text"].rstrip(), "", f"written: {table['csv']}, {table['md']}, {table['png']}"]
    return "\n".join(lines)

