"""MultiCropWrapper with extra heads: roles, extra views for the teacher, outputs by name."""

import pytest
import torch
import torch.nn as nn

from geodino.models import DINOHead, MultiCropWrapper, build_backbone
from geodino.models.multicrop import ExtraHeads


class Recorder(ExtraHeads):
    """An extra head that reports what it was given."""

    def __init__(self, teacher_sees_all_crops: bool) -> None:
        super().__init__()
        self.teacher_sees_all_crops = teacher_sees_all_crops
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, features, role, masks=None, n_views=None):
        return {"role": role, "grids": [f.grid for f in features], "masks": masks}


def _net(role, teacher_sees_all_crops=True):
    backbone = build_backbone("vit_tiny_patch16_224", in_chans=3, img_size=32, patch_size=8, depth=1)
    net = MultiCropWrapper(backbone, DINOHead(192, 16, 32, 8), role=role).eval()
    net.extra_heads["rec"] = Recorder(teacher_sees_all_crops)
    return net


def test_teacher_runs_extra_views_only_for_heads_that_ask():
    globals_, locals_ = [torch.randn(2, 3, 32, 32)] * 2, [torch.randn(2, 3, 16, 24)] * 3
    out = _net("teacher")(globals_, extra_views=locals_)
    assert len(out.logits) == 2  # the image head sees the teacher's own views only
    assert out.extra["rec"]["role"] == "teacher"
    assert out.extra["rec"]["grids"] == [(4, 4)] * 2 + [(2, 3)] * 3
    out = _net("teacher", teacher_sees_all_crops=False)(globals_, extra_views=locals_)
    assert out.extra["rec"]["grids"] == [(4, 4)] * 2
    out = _net("student")(globals_ + locals_, extra_views=locals_)  # the student ignores extra views
    assert out.extra["rec"]["grids"] == [(4, 4)] * 2 + [(2, 3)] * 3 and out.extra["rec"]["role"] == "student"


def test_unknown_role_is_refused():
    with pytest.raises(ValueError, match="role"):
        _net("critic")
