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


def test_crops_of_one_size_are_joined_without_a_copy_when_they_lie_back_to_back():
    from geodino.models.multicrop import _join

    views = torch.randn(3, 4, 2, 5, 5)
    joined = _join(list(views.unbind(0)))
    assert torch.equal(joined, views.reshape(12, 2, 5, 5))
    assert joined.data_ptr() == views.data_ptr()  # a view: nothing copied
    apart = [views[0], views[2]]  # a gap between them: copied
    assert torch.equal(_join(apart), torch.cat(apart)) and _join(apart).data_ptr() != views.data_ptr()
    backwards = [views[1], views[0]]
    assert torch.equal(_join(backwards), torch.cat(backwards))
    other = [views[0], torch.randn(4, 2, 5, 5)]
    assert torch.equal(_join(other), torch.cat(other))
    needs_grad = [v.clone().requires_grad_() for v in views.unbind(0)]
    assert _join(needs_grad).grad_fn is not None
