"""The pretrained teacher backbone of a checkpoint, with the dataset card that says how to feed it.

Everything downstream of pretraining (k-NN, linear probe, segmentation, export, attention maps)
starts here. The backbone is rebuilt from the recipe stored in the checkpoint and takes the
``backbone.`` part of the teacher's weights; the image head and any patch-level heads stay behind.
The checkpoint is opened with ``weights_only=True``.

:func:`load_random_backbone` is the baseline of the same checkpoint: the backbone its recipe builds,
initialised as that pretraining run was at step 0, for scores of "no pretraining at all".
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from geodino.data.card import DatasetCard
from geodino.data.registry import get_source
from geodino.models.backbone import Backbone, build_backbone
from geodino.runs.checkpoint import EXPORT_BANDS, EXPORT_CONFIG, EXPORT_WEIGHTS, load_pretraining_checkpoint
from geodino.speedups import prepare_model
from geodino.utils import read_json

BACKBONE_PREFIX = "backbone."


def recipe_card(cfg: dict[str, Any]) -> DatasetCard:
    """The dataset card the recipe ``cfg`` (a config dict) trained with, as its data source tells it."""
    data = cfg.get("data", {})
    return get_source(data.get("source", "synthetic")).card(data)


def checkpoint_card(ckpt_path: str | Path, cfg: dict[str, Any]) -> DatasetCard:
    """``card.yaml`` beside the checkpoint if there is one, else the card its recipe names."""
    beside = Path(ckpt_path).parent / "card.yaml"
    return DatasetCard.load(beside) if beside.is_file() else recipe_card(cfg)


def teacher_backbone_weights(teacher_state: dict[str, Any]) -> dict[str, Any]:
    """The backbone's entries of a teacher state dict, with the ``backbone.`` prefix removed."""
    weights = {k[len(BACKBONE_PREFIX):]: v for k, v in teacher_state.items() if k.startswith(BACKBONE_PREFIX)}
    if not weights:
        raise ValueError("the teacher state has no 'backbone.' entries: not a geodino checkpoint?")
    return weights


def build_recipe_backbone(cfg: dict[str, Any], in_chans: int) -> Backbone:
    """A backbone of the recipe's architecture, randomly initialised (as pretraining built it)."""
    model, augment = cfg["model"], cfg["augment"]
    return build_backbone(
        model["arch"],
        in_chans=in_chans,
        img_size=augment["global_size"],
        patch_size=model.get("patch_size") or None,
        depth=model.get("depth") or None,
    )


def _read_checkpoint(ckpt_path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(recipe dict, teacher backbone weights)`` of a pretraining checkpoint, or a one-line ValueError."""
    state = load_pretraining_checkpoint(ckpt_path, need=("teacher", "config"))
    return state["config"], teacher_backbone_weights(state["teacher"])


def _resolve_card(ckpt_path: str | Path, cfg: dict[str, Any], card: DatasetCard | str | Path | None) -> DatasetCard:
    if card is None:
        return checkpoint_card(ckpt_path, cfg)
    return card if isinstance(card, DatasetCard) else DatasetCard.load(card)


def _misfit(ckpt_path: str | Path, cfg: dict[str, Any], card: DatasetCard, detail: str) -> ValueError:
    return ValueError(f"{ckpt_path}: the teacher backbone does not fit {cfg['model']['arch']} with "
                      f"{card.num_bands} bands (card {card.name!r}): {detail[:400]}")


def load_teacher_backbone(
    ckpt_path: str | Path, card: DatasetCard | str | Path | None = None, device: str = "cpu"
) -> tuple[Backbone, DatasetCard, dict[str, Any]]:
    """``(backbone, card, recipe dict)`` of a pretraining checkpoint; the backbone is in eval mode.

    ``card`` overrides the card found beside the checkpoint or named by its recipe (a card object,
    the name of a packaged card or a YAML path); it must list as many bands as the backbone takes.
    """
    cfg, weights = _read_checkpoint(ckpt_path)
    card = _resolve_card(ckpt_path, cfg, card)
    takes = next((w.shape[1] for k, w in weights.items() if k.endswith("patch_embed.proj.weight")), card.num_bands)
    if takes != card.num_bands:
        raise ValueError(f"{ckpt_path}: the backbone takes {takes} bands, the card {card.name!r} lists "
                         f"{card.num_bands}: give the card of the data it was pretrained on")
    backbone = build_recipe_backbone(cfg, card.num_bands)
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise _misfit(ckpt_path, cfg, card, str(err)) from None
    prepare_model(backbone, device)
    return backbone.to(device).eval(), card, cfg


def load_export_backbone(folder: str | Path, device: str = "cpu") -> tuple[Backbone, DatasetCard, dict[str, Any]]:
    """``(backbone, card, timm config)`` of a ``geodino export`` folder: the timm model its config
    describes with its weights (strictly), and the card its ``bands.json`` describes."""
    from safetensors.torch import load_file

    folder = Path(folder)
    files = {name: folder / name for name in (EXPORT_CONFIG, EXPORT_BANDS, EXPORT_WEIGHTS)}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise ValueError(f"{folder} is not a geodino export folder (no {', '.join(missing)})")
    config, bands = read_json(files[EXPORT_CONFIG]), read_json(files[EXPORT_BANDS])
    card = DatasetCard.from_dict({"name": bands.get("dataset", folder.name), "bands": bands["bands"],
                                  "statistics": {"mean": bands["mean"], "std": bands["std"]},
                                  "classes": bands.get("classes", [])}, source=str(files[EXPORT_BANDS]))
    args = dict(config["model_args"])
    size = args.get("img_size")
    backbone = build_backbone(config["architecture"], in_chans=args["in_chans"],
                              img_size=size[0] if isinstance(size, (list, tuple)) else size,
                              patch_size=args.get("patch_size"), depth=args.get("depth"))
    try:
        backbone.model.load_state_dict(load_file(str(files[EXPORT_WEIGHTS])), strict=True)
    except RuntimeError as err:
        raise ValueError(f"{folder}: the weights do not fit the model its config.json describes "
                         f"({str(err).splitlines()[0]})") from None
    prepare_model(backbone, device)
    return backbone.to(device).eval(), card, config


def random_init_name(cfg: dict[str, Any]) -> str:
    """How reports name the untrained backbone of the recipe ``cfg``."""
    return f"random-init (seed {cfg.get('run', {}).get('seed', 0)})"


@contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Leave Python's, NumPy's and torch's CPU random state as they were: seeding like pretraining
    is a detail of building the baseline, not something a caller of the evaluation should inherit.
    (CUDA generators, which only the seeding touches, are left reseeded.)"""
    import numpy as np
    import torch

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def initial_teacher_backbone(cfg: dict[str, Any], in_chans: int) -> Backbone:
    """The teacher backbone that a pretraining run of the recipe ``cfg`` (a config dict) holds at step 0.

    Built by the engine's own builder after the same seeding call (``set_seed(run.seed)`` right before
    ``build_student_teacher``, see ``DINOStep``), so the weights are the run's, bit for bit: the
    student, its heads and the teacher copy are all built, in the order pretraining builds them,
    and the teacher's backbone is kept. In train mode, like any freshly built module.
    """
    from accelerate.utils import set_seed

    from geodino.config.load import ConfigError, apply_mapping, upgrade_saved_config
    from geodino.config.schema import Config
    from geodino.objectives.networks import build_student_teacher

    recipe = Config()
    try:
        apply_mapping(recipe, upgrade_saved_config(cfg))
    except ConfigError as err:
        raise ConfigError(f"the checkpoint's recipe does not fit this geodino: {err}") from None
    with _global_rng_kept():
        set_seed(recipe.run.seed)
        _, teacher = build_student_teacher(recipe, in_chans)
    return teacher.backbone


def load_random_backbone(
    ckpt_path: str | Path, card: DatasetCard | str | Path | None = None, device: str = "cpu"
) -> tuple[Backbone, DatasetCard, dict[str, Any]]:
    """Like :func:`load_teacher_backbone`, but the backbone is the untrained one of the checkpoint's
    recipe (:func:`initial_teacher_backbone`, with as many bands as the card has): the
    random-initialisation baseline, fed exactly as the trained backbone is (same card)."""
    cfg, weights = _read_checkpoint(ckpt_path)
    card = _resolve_card(ckpt_path, cfg, card)
    try:
        backbone = initial_teacher_backbone(cfg, card.num_bands)
    except ValueError as err:
        raise ValueError(f"{ckpt_path}: {err}") from None
    # A baseline is only a baseline of this checkpoint if it is the architecture the trained weights
    # have: a card of other bands is refused here as it is for the trained backbone.
    ours = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in weights.items()}
    if ours != theirs:
        differing = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        raise _misfit(ckpt_path, cfg, card, "differs in " + ", ".join(
            f"{k} {theirs.get(k, 'missing')} vs {ours.get(k, 'missing')}" for k in differing[:3]))
    prepare_model(backbone, device)
    return backbone.to(device).eval(), card, cfg
