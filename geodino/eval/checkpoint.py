"""The pretrained teacher backbone of a checkpoint, with the dataset card that says how to feed it.

Everything downstream of pretraining (k-NN, linear probe, segmentation, export, attention maps)
starts here. The backbone is rebuilt from the recipe stored in the checkpoint and takes the
``backbone.`` part of the teacher's weights; the image head and any patch-level heads stay behind.
The checkpoint is opened with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geodino.data.card import DatasetCard
from geodino.data.registry import get_source
from geodino.models.backbone import Backbone, build_backbone
from geodino.models.onednn_linear import use_onednn_linears

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


def load_teacher_backbone(
    ckpt_path: str | Path, card: DatasetCard | str | Path | None = None, device: str = "cpu"
) -> tuple[Backbone, DatasetCard, dict[str, Any]]:
    """``(backbone, card, recipe dict)`` of a pretraining checkpoint; the backbone is in eval mode.

    ``card`` overrides the card found beside the checkpoint or named by its recipe (a card object,
    a name from ``datasets/`` or a YAML path); it must list as many bands as the backbone takes.
    """
    from geodino.engine.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt_path)
    if "teacher" not in state or "config" not in state:
        raise ValueError(f"{ckpt_path} is not a geodino pretraining checkpoint (no 'teacher'/'config')")
    cfg = state["config"]
    weights = teacher_backbone_weights(state["teacher"])
    if card is None:
        card = checkpoint_card(ckpt_path, cfg)
    elif not isinstance(card, DatasetCard):
        card = DatasetCard.load(card)
    backbone = build_recipe_backbone(cfg, card.num_bands)
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{ckpt_path}: the teacher backbone does not fit {cfg['model']['arch']} with "
                         f"{card.num_bands} bands (card {card.name!r}): {str(err)[:400]}") from None
    use_onednn_linears(backbone)
    return backbone.to(device).eval(), card, cfg
