"""Segmentation fine-tuning recipes: the schema, and loading with overrides and validation.

A recipe is YAML with four sections (``run``, ``model``, ``data``, ``train``); command-line
overrides use dotted keys (``train.epochs=2``). Loading, type checking and misspelt-key hints are
those of the pretraining recipes (:mod:`geodino.config.load`); only the schema and the checks
that span keys live here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from geodino.config.load import (ConfigError, apply_mapping, apply_recipe, check_data_keys, check_data_source,
                                 check_ranges, recipe_path)
from geodino.config.schema import bounded

Head = Literal["linear", "progressive", "upernet"]
HEADS = get_args(Head)
RANDOM_INIT = "none"


@dataclass
class SegRunConfig:
    out_dir: str = "runs/seg"
    seed: int = bounded(0, ge=0, lt=2**32)
    device: str = "auto"  # the GPU when there is one
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # autocast of the model's passes; auto: bf16 on a GPU that has it


@dataclass
class SegModelConfig:
    pretrained: str = ""  # a geodino pretraining checkpoint or export folder, or "none" (random init of the arch below)
    # Architecture of a randomly initialised backbone (a checkpoint brings its own):
    arch: str = "vit_small_patch16_224"
    patch_size: int = bounded(0, ge=0)  # 0 = the arch's own
    depth: int = bounded(0, ge=0)  # 0 = the arch's own
    img_size: int = bounded(0, ge=0)  # size the position embedding is laid out for; 0 = data.image_size
    head: Head = "upernet"
    freeze_backbone: bool = False
    layer_decay: float = bounded(0.75, gt=0, le=1)  # lr of block i = lr × decay^(depth + 1 − (i + 1)); 1 = no decay
    decoder_channels: int = bounded(256, ge=1)  # width of the progressive / UPerNet decoders
    levels: list[int] = field(default_factory=list)  # blocks feeding UPerNet; [] = 4 evenly spaced
    drop_path_rate: float = bounded(0.0, ge=0, lt=1)


@dataclass
class SegDataConfig:
    source: str = "synthetic"  # synthetic | shards (mask.npy) | sen12ms (torchgeo SEN12MS layout)
    root: str = ""  # shard folder / pattern, or the SEN12MS root (not with synthetic: it reads no files)
    card: str = ""  # card of the data when it cannot be found (random init on sen12ms)
    train_split: str = "train"  # split names in any spelling (validation = val; see geodino.data.splits)
    val_split: str = ""  # "" = val, else test; never a split that shares shards with train_split
    image_size: int = bounded(32, ge=1)  # model input size; predictions are resized back to the mask size
    batch_size: int = bounded(16, ge=2, why="the decoders use batch norm")
    num_workers: int = bounded(-1, ge=-1)  # loader processes; -1: 4 with a GPU, 0 on the CPU
    num_samples: int = bounded(512, ge=0)  # training samples (synthetic: scenes; others: 0 = all)
    val_samples: int = bounded(128, ge=0)  # validation samples (synthetic: scenes; others: 0 = all)
    num_classes: int = bounded(8, ge=2)  # synthetic scenes
    label_map: Literal["dfc", "igbp"] = "dfc"  # sen12ms: 10 simplified IGBP classes (DFC2020) | 17 IGBP classes


@dataclass
class SegTrainConfig:
    epochs: int = bounded(5, ge=1)
    lr: float = bounded(1e-3, gt=0)  # the decoder's; backbone blocks get lr × layer-decay factor
    min_lr: float = bounded(1e-6, ge=0)
    warmup_epochs: int = bounded(1, ge=0)
    weight_decay: float = bounded(0.05, ge=0)
    max_steps: int = bounded(0, ge=0)  # stop early after this many steps (0 = the full schedule)
    log_every: int = bounded(10, ge=1)
    eval_every: int = bounded(0, ge=0)  # epochs; 0 = only at the end
    flip: bool = True  # random horizontal and vertical flips of image and mask
    predictions: int = bounded(8, ge=0)  # validation samples drawn as PNG (image | ground truth | prediction)


@dataclass
class SegConfig:
    run: SegRunConfig = field(default_factory=SegRunConfig)
    model: SegModelConfig = field(default_factory=SegModelConfig)
    data: SegDataConfig = field(default_factory=SegDataConfig)
    train: SegTrainConfig = field(default_factory=SegTrainConfig)


# Model keys that shape a randomly initialised backbone; a pretrained one brings its own.
RANDOM_INIT_ONLY = frozenset({"arch", "patch_size", "depth", "img_size", "drop_path_rate"})


def load_seg_config(recipe: str | Path, overrides: list[str] | None = None) -> SegConfig:
    """Defaults ← recipe ← overrides, validated."""
    cfg = SegConfig()
    given = apply_recipe(cfg, recipe_path(recipe), overrides)
    validate_seg(cfg)
    check_data_keys(given, cfg.data.source, "segmentation")
    if cfg.model.pretrained != RANDOM_INIT:
        read = {f.name for f in dataclasses.fields(SegModelConfig)} - RANDOM_INIT_ONLY
        given.check_read("model", read, lambda keys: "when model.pretrained is a checkpoint or export (it brings "
                                                     f"its own backbone; they shape a {RANDOM_INIT!r} one)")
    return cfg


def seg_config_from_dict(data: dict[str, Any]) -> SegConfig:
    cfg = SegConfig()
    apply_mapping(cfg, data)
    validate_seg(cfg)
    return cfg


def validate_seg(cfg: SegConfig) -> None:
    m, d, t = cfg.model, cfg.data, cfg.train
    check_ranges(cfg)
    if not m.pretrained:
        raise ConfigError(f"model.pretrained: a pretraining checkpoint, or {RANDOM_INIT!r} for a random init")
    if m.pretrained != RANDOM_INIT and not Path(m.pretrained).is_file() and not Path(m.pretrained).is_dir():
        raise ConfigError(f"model.pretrained: checkpoint or export folder {m.pretrained!r} not found "
                          f"(or use {RANDOM_INIT!r})")
    check_data_source(d.source, d.root, "segmentation")
    if d.source == "synthetic":  # 0 means "all" of a real source; of generated scenes it means none
        for key in ("num_samples", "val_samples"):
            if getattr(d, key) == 0:
                raise ConfigError(f"data.{key}=0: the synthetic source makes as many scenes as asked; give a number")
    if t.warmup_epochs > t.epochs:
        raise ConfigError("train.warmup_epochs: longer than train.epochs")
    if m.levels and len(m.levels) != 4:
        raise ConfigError(f"model.levels: UPerNet takes 4 blocks, got {m.levels}")


def seg_config_to_dict(cfg: SegConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_seg_config(cfg: SegConfig, path: str | Path) -> None:
    from geodino.utils import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(seg_config_to_dict(cfg), sort_keys=False))
