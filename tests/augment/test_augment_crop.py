"""Bicubic resampling of crop boxes (geodino/augment/crop.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geodino.augment.crop import resized_crops


def _full_boxes(v: int, n: int, h: int, w: int) -> torch.Tensor:
    return torch.tensor([0, 0, h, w]).expand(v, n, 4).clone()


def test_full_image_same_size_is_identity_and_flip_mirrors() -> None:
    x = torch.rand(3, 5, 16, 16)
    boxes = _full_boxes(2, 3, 16, 16)
    flip = torch.tensor([[False] * 3, [True] * 3])
    out = resized_crops(x, boxes, flip, 16).view(2, 3, 5, 16, 16)
    torch.testing.assert_close(out[0], x, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], x.flip(-1), atol=1e-5, rtol=0)


def test_full_image_resize_matches_torch_bicubic_interpolate() -> None:
    x = torch.rand(2, 4, 20, 20)
    for size in (12, 33):
        out = resized_crops(x, _full_boxes(1, 2, 20, 20), torch.zeros(1, 2, dtype=torch.bool), size)
        ref = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_unscaled_box_is_a_slice_and_views_are_ordered() -> None:
    x = torch.rand(2, 3, 30, 40)
    boxes = torch.tensor([[[2, 5, 10, 10], [0, 30, 10, 10]], [[20, 0, 10, 10], [7, 11, 10, 10]]])
    out = resized_crops(x, boxes, torch.zeros(2, 2, dtype=torch.bool), 10).view(2, 2, 3, 10, 10)
    for v in range(2):
        for i in range(2):
            t, l, h, w = boxes[v, i].tolist()
            torch.testing.assert_close(out[v, i], x[i, :, t : t + h, l : l + w], atol=1e-5, rtol=0)
