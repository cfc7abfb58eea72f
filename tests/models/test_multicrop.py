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
    from geodino.models.multicrop import join_rows as _join

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


def test_image_logits_are_one_views_tensor_and_the_views_cls_rows_are_not_copied():
    from geodino.models.multicrop import join_rows
    from geodino.objectives import DINOLoss

    net = _net("student")
    del net.extra_heads["rec"]  # CLS-only: the packed backbone's CLS rows are one tensor
    views = [torch.randn(2, 3, 32, 32)] * 2 + [torch.randn(2, 3, 16, 16)] * 3
    out = net(views)
    assert out.logits.shape == (5, 2, 16) and len(out.logits) == 5  # indexes and iterates like a list of views
    for view, logits in zip(views, out.logits):
        torch.testing.assert_close(logits, net(views=[view, view]).logits[0], atol=1e-5, rtol=1e-4)
    loss = DINOLoss(16)
    assert torch.allclose(loss(out, out.logits[:2].detach(), 0.04), DINOLoss(16)(list(out.logits), list(out.logits[:2]), 0.04))
    with pytest.raises(ValueError, match="same number of images"):
        net([torch.randn(2, 3, 32, 32), torch.randn(3, 3, 32, 32)])
    # join_rows: the tensor the parts were split from when they are all of it, in order; else a copy.
    base = torch.randn(7, 4, requires_grad=True) * 1
    assert join_rows(list(base.split([3, 4]))) is base
    assert join_rows([base[:3]]) is not base
    for parts in (list(base.split([3, 4]))[::-1], list(base.split([3, 3, 1]))[:2], [base[:3], torch.randn(4, 4)]):
        torch.testing.assert_close(join_rows(parts), torch.cat(parts))
    assert join_rows(list(base.split([3, 4]))) is base
    with torch.no_grad():  # as torch.cat there: no gradient
        assert not join_rows(list(base.split([3, 4]))).requires_grad


def test_mask_rows_reach_the_extra_heads_with_the_masks_even_through_a_plain_list():
    # A data-parallel wrapper may rebuild PatchMasks as a plain list on its way in; the engine
    # also passes the rows as a tensor of their own and the wrapper joins them again.
    from geodino.models.multicrop import PatchMasks

    globals_ = [torch.randn(2, 3, 32, 32)] * 2
    host = [torch.rand(2, 4, 4) < 0.5, torch.rand(2, 4, 4) < 0.5]
    masks = PatchMasks.to_device(host, torch.device("cpu"))
    assert torch.equal(masks.rows, torch.cat([m.reshape(2, -1) for m in host]).reshape(-1).nonzero().squeeze(1))
    got = _net("teacher")(globals_, masks=list(masks), mask_rows=masks.rows).extra["rec"]["masks"]
    assert isinstance(got, PatchMasks) and got.rows is masks.rows and list(got) == list(masks)
    assert not isinstance(_net("teacher")(globals_, masks=list(masks)).extra["rec"]["masks"], PatchMasks)
