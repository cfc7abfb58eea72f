"""Crop-box and per-view parameter sampling (geodino/augment/params.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geodino.augment.params import ViewRecipe, sample_crop_boxes, sample_view_params
from geodino.rng import RowRandom


def _rng(n: int, seed: int = 0) -> RowRandom:
    return RowRandom(seed, 0, n)


@pytest.mark.parametrize("height,width,scale", [(120, 120, (0.4, 1.0)), (120, 120, (0.05, 0.4)), (64, 96, (0.08, 1.0))])
def test_boxes_inside_image_with_area_and_ratio_in_range(height: int, width: int, scale: tuple[float, float]) -> None:
    boxes = sample_crop_boxes(_rng(4000), height, width, scale)
    assert boxes.shape == (4000, 4) and boxes.dtype == torch.int64
    top, left, h, w = boxes.T.double()
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    area = height * width
    # Rounding to whole pixels moves each side by at most half a pixel.
    assert ((h + 0.5) * (w + 0.5) >= scale[0] * area).all()
    assert ((h - 0.5) * (w - 0.5) <= scale[1] * area).all()
    assert ((w + 0.5) / (h - 0.5) >= 3 / 4).all()
    assert ((w - 0.5) / (h + 0.5) <= 4 / 3).all()
    # Positions are spread over the whole allowed range, not centred.
    for start, side, extent in [(top, h, height), (left, w, width)]:
        room = extent - side
        where = (start[room >= 10] / room[room >= 10])
        assert where.min() < 0.05 and where.max() > 0.95 and abs(where.mean().item() - 0.5) < 0.05


def test_area_fraction_is_uniform_in_scale_range() -> None:
    boxes = sample_crop_boxes(_rng(20000, 1), 200, 200, (0.2, 0.6))
    fraction = boxes[:, 2].double() * boxes[:, 3] / 200**2
    assert abs(fraction.mean().item() - 0.4) < 0.01
    assert abs(fraction.quantile(0.25).item() - 0.3) < 0.01


def test_log_uniform_aspect_ratio() -> None:
    boxes = sample_crop_boxes(_rng(20000, 2), 400, 400, (0.1, 0.2))
    log_ratio = torch.log(boxes[:, 3].double() / boxes[:, 2])
    assert abs(log_ratio.mean().item()) < 0.01
    # Uniform on [-log(4/3), log(4/3)]: standard deviation log(4/3) / sqrt(3).
    assert abs(log_ratio.std().item() - math.log(4 / 3) / math.sqrt(3)) < 0.01


def test_fallback_is_centred_largest_allowed_box() -> None:
    # A 20 x 60 image cannot hold a full-area box with ratio <= 4/3: every attempt fails.
    boxes = sample_crop_boxes(_rng(50), 20, 60, (1.0, 1.0))
    expected_w = round(20 * 4 / 3)
    assert (boxes == torch.tensor([0, (60 - expected_w) // 2, 20, expected_w])).all()
    # A square image with scale (1, 1): the whole image (directly or through the fallback).
    boxes = sample_crop_boxes(_rng(50), 32, 32, (1.0, 1.0))
    assert (boxes == torch.tensor([0, 0, 32, 32])).all()


def test_draws_do_not_depend_on_the_outcome() -> None:
    r1, r2 = _rng(100, 3), _rng(100, 3)
    sample_crop_boxes(r1, 20, 60, (1.0, 1.0))  # every attempt fails
    sample_crop_boxes(r2, 500, 500, (0.1, 0.2))  # first attempt fits
    assert r1.draws == r2.draws and np.array_equal(r1.rand(5), r2.rand(5))


def test_same_seed_same_boxes() -> None:
    a = sample_crop_boxes(_rng(64, 7), 120, 120, (0.05, 0.4))
    b = sample_crop_boxes(_rng(64, 7), 120, 120, (0.05, 0.4))
    c = sample_crop_boxes(_rng(64, 8), 120, 120, (0.05, 0.4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_view_params_ranges_and_probabilities() -> None:
    recipe = ViewRecipe(size=8, scale=(0.4, 1.0), brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                        jitter_p=0.8, flip_p=0.5, grayscale_p=0.2, blur_p=0.1, solarize_p=0.2)
    n = 20000
    p = sample_view_params(recipe, _rng(n), 32, 32)
    f = p.factors[0]
    for col, (lo, hi) in enumerate([(0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)]):
        assert f[:, col].min() >= lo and f[:, col].max() <= hi
        assert f[:, col].min() < lo + 0.01 and f[:, col].max() > hi - 0.01
    assert (p.sigma >= 0.1).all() and (p.sigma <= 2.0).all()
    # Every row's order is a permutation of the four ops, and all 24 permutations occur.
    order = p.order[0]
    assert (np.sort(order, axis=1) == np.arange(4)).all()
    assert len({tuple(r) for r in order.tolist()}) == 24
    tol = 5 * math.sqrt(0.25 / n)
    for field, prob in [("flip", 0.5), ("jitter", 0.8), ("grayscale", 0.2), ("blur", 0.1), ("solarize", 0.2)]:
        assert abs(getattr(p, field).mean() - prob) < tol, field


def test_recipe_validation() -> None:
    with pytest.raises(ValueError):
        ViewRecipe(size=8, scale=(0.4, 1.0), flip_p=1.5)
    with pytest.raises(ValueError):
        ViewRecipe(size=8, scale=(0.4, 1.0), blur_sigma=(0.0, 2.0))
    with pytest.raises(ValueError):
        sample_crop_boxes(_rng(4), 8, 8, (0.0, 1.0))
