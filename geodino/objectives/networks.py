"""The student and teacher networks and the objectives that a recipe describes.

Here rather than in the engine: evaluation rebuilds the same networks from a checkpoint's recipe.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from geodino.config.schema import Config
from geodino.models import DINOHead, MultiCropWrapper, build_backbone
from geodino.models.multicrop import ExtraHeads
from geodino.objectives import DINOLoss, Objective, patch_objective


def build_extra_heads(cfg: Config, embed_dim: int, is_vit: bool) -> dict[str, ExtraHeads]:
    """The trainable parts of the recipe's patch-level objective, by objective name."""
    name = cfg.objective.patch
    if name == "none":
        return {}
    return {name: patch_objective(name).heads(cfg, embed_dim, is_vit)}


def build_network(cfg: Config, in_chans: int, drop_path_rate: float, role: str = "student") -> MultiCropWrapper:
    m = cfg.model
    backbone = build_backbone(
        m.arch,
        in_chans=in_chans,
        img_size=cfg.augment.global_size,
        patch_size=m.patch_size or None,
        drop_path_rate=drop_path_rate,
        depth=m.depth or None,
    )
    a = cfg.augment
    for key, size in (("global_size", a.global_size), ("local_size", a.local_size if a.n_local else 0)):
        backbone.check_input_size(size, f"augment.{key}", hint=f"model.patch_size, or {m.arch}'s own when 0")
    head = DINOHead(backbone.embed_dim, m.out_dim, m.hidden_dim, m.bottleneck_dim, m.nlayers,
                    m.use_bn_in_head, m.norm_last_layer)
    net = MultiCropWrapper(backbone, head, role=role)
    # Built after the backbone and head, so that without a patch objective the weights are the same.
    net.extra_heads.update(build_extra_heads(cfg, backbone.embed_dim, backbone.is_vit))
    return net


def build_student_teacher(cfg: Config, in_chans: int, band_names: list[str] | None = None,
                          init_report: dict | None = None) -> tuple[MultiCropWrapper, MultiCropWrapper]:
    """The student (with stochastic depth; from ``model.init`` when set, its band mapping put in
    ``init_report``) and a teacher that starts as an exact copy of it.

    The teacher has no stochastic depth and never receives gradients.
    """
    student = build_network(cfg, in_chans, cfg.model.drop_path_rate, role="student")
    report = initialise_from_weights(cfg, student, band_names)
    if report is not None and init_report is not None:
        init_report.update(report)
    teacher = build_network(cfg, in_chans, 0.0, role="teacher")
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, teacher


def initialise_from_weights(cfg: Config, student: MultiCropWrapper, band_names: list[str] | None) -> dict | None:
    """Load ``model.init`` into the student (backbone, and the DINO head when it fits) before the
    teacher copies it; returns the band-mapping report, or None without ``model.init``."""
    if not cfg.model.init:
        return None
    from geodino.models.init import InitError, apply_init, load_head, read_init_weights

    if band_names is None:
        raise InitError("model.init needs the run's band names (a dataset card)")
    weights = read_init_weights(cfg.model.init, cfg.model.init_bands)
    report = apply_init(student.backbone.model, weights, list(band_names))
    report["head"] = "continued" if load_head(student.head, weights.head) else "fresh"
    return report


def build_objectives(cfg: Config) -> nn.ModuleDict:
    """Every objective of the recipe by name; the engine sums them with their weights."""
    objectives: dict[str, Objective] = {
        "dino": DINOLoss(cfg.model.out_dim, cfg.dino.student_temp, cfg.dino.center_momentum)
    }
    name = cfg.objective.patch
    if name != "none":
        objectives[name] = patch_objective(name).loss(cfg, name)
    return nn.ModuleDict(objectives)


def objective_weights(cfg: Config) -> dict[str, float]:
    weights = {"dino": 1.0}
    if cfg.objective.patch != "none":
        weights[cfg.objective.patch] = cfg.objective.patch_weight
    return weights


def weighted_sum(values: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """``sum(weights[k] * values[k])``, without the ops of a weight of 1 or a start at 0."""
    total = None
    for name, value in values.items():
        term = value if weights[name] == 1 else weights[name] * value
        total = term if total is None else total + term
    assert total is not None, "no objective"
    return total
