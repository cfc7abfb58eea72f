"""Build the student and teacher networks and the objectives that a recipe describes."""

from __future__ import annotations

import torch
import torch.nn as nn

from geodino.config.schema import Config
from geodino.models import DINOHead, MultiCropWrapper, build_backbone
from geodino.objectives import DINOLoss


def build_network(cfg: Config, in_chans: int, drop_path_rate: float) -> MultiCropWrapper:
    m = cfg.model
    backbone = build_backbone(
        m.arch,
        in_chans=in_chans,
        img_size=cfg.augment.global_size,
        patch_size=m.patch_size or None,
        drop_path_rate=drop_path_rate,
        depth=m.depth or None,
    )
    head = DINOHead(backbone.embed_dim, m.out_dim, m.hidden_dim, m.bottleneck_dim, m.nlayers,
                    m.use_bn_in_head, m.norm_last_layer)
    return MultiCropWrapper(backbone, head)


def build_student_teacher(cfg: Config, in_chans: int) -> tuple[MultiCropWrapper, MultiCropWrapper]:
    """The student (with stochastic depth) and a teacher that starts as an exact copy of it.

    The teacher has no stochastic depth and never receives gradients.
    """
    student = build_network(cfg, in_chans, cfg.model.drop_path_rate)
    teacher = build_network(cfg, in_chans, 0.0)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad_(False)
    return student, teacher


def build_objectives(cfg: Config) -> nn.ModuleDict:
    """Every objective of the recipe by name; the engine sums them with their weights."""
    return nn.ModuleDict(
        {"dino": DINOLoss(cfg.model.out_dim, cfg.dino.student_temp, cfg.dino.center_momentum)}
    )


def objective_weights(cfg: Config) -> dict[str, float]:
    return {"dino": 1.0}


def compile_backbone(net: MultiCropWrapper) -> None:
    """``torch.compile`` the backbone's forward in place; parameter names stay unchanged."""
    model = net.backbone.model
    model.forward_features = torch.compile(model.forward_features, dynamic=False)
