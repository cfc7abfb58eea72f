"""Block masks: exact counts, rectangular blocks, reproducibility, and process-count independence."""

import random

import pytest
import torch
import torch.nn.functional as F

from geodino.objectives.masking import _add_block, block_mask, sample_block_masks
from geodino.rng import RowRandom


def _masks(seed, total=8, offset=0, batch=None, **kwargs):
    rng = RowRandom(seed, offset, total - offset if batch is None else batch)
    return sample_block_masks(**{**dict(n_views=2, grid=(14, 14)), **kwargs}, rng=rng)


def test_each_block_is_a_filled_rectangle():
    rng = random.Random(0)
    for _ in range(50):
        mask = torch.zeros(10, 12, dtype=torch.bool)
        added = _add_block(mask, 30, rng, 4, (-1.2, 1.2))
        assert added == int(mask.sum()) and 0 < added <= 30
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all()  # the bounding box is completely masked: one rectangle


@pytest.mark.parametrize("h,w,count", [(14, 14, 59), (7, 7, 12), (4, 4, 8), (2, 3, 5), (1, 6, 2), (3, 3, 0)])
def test_block_mask_has_exactly_the_requested_count(h, w, count):
    for seed in range(5):
        assert int(block_mask(h, w, count, random.Random(seed)).sum()) == count


def _masked_neighbour_share(mask):
    # mean over masked patches of the share of their 4-neighbours (inside the grid) that are masked
    cross = torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]])[None, None]
    masked = F.conv2d(mask.float()[None, None], cross, padding=1)[0, 0]
    inside = F.conv2d(torch.ones(1, 1, *mask.shape), cross, padding=1)[0, 0]
    return float((masked / inside)[mask].mean())


def test_masks_are_blockier_than_random_patches():
    g = torch.Generator().manual_seed(0)
    blocky = [_masked_neighbour_share(block_mask(14, 14, 59, random.Random(s))) for s in range(20)]
    scattered = [_masked_neighbour_share(torch.randperm(196, generator=g).lt(59).view(14, 14)) for _ in range(20)]
    assert sum(blocky) / 20 > 0.6 > 0.4 > sum(scattered) / 20


def test_probability_and_ratio_of_the_masked_crops():
    masks = _masks(0, total=200, probability=0.5, ratio=(0.1, 0.5))
    counts = masks.flatten(2).sum(-1)  # [views, crops]
    masked = counts > 0
    assert 0.4 < masked.float().mean() < 0.6
    fractions = counts[masked].float() / 196
    assert fractions.min() >= round(0.1 * 196) / 196 and fractions.max() <= round(0.5 * 196) / 196
    assert fractions.std() > 0.05  # spread over the range, not one value
    assert not _masks(0, total=20, probability=0.0).any()
    assert (_masks(0, total=20, probability=1.0).flatten(2).sum(-1) > 0).all()


def test_reproducible_from_the_seed():
    assert torch.equal(_masks(3), _masks(3))
    assert not torch.equal(_masks(3), _masks(4))


def test_two_processes_by_offset_equal_one_process():
    whole = _masks(7, total=8)
    first = _masks(7, total=8, offset=0, batch=4)
    second = _masks(7, total=8, offset=4, batch=4)
    assert torch.equal(torch.cat([first, second], dim=1), whole)
    assert whole.shape == (2, 8, 14, 14)


def test_non_square_grid_and_bad_arguments():
    masks = _masks(1, grid=(3, 5), total=6, probability=1.0, ratio=(0.4, 0.4))
    assert masks.shape == (2, 6, 3, 5)
    assert (masks.flatten(2).sum(-1) == 6).all()  # round(0.4 * 15)
    with pytest.raises(ValueError, match="rows"):
        _masks(1, total=4, offset=-1, batch=4)
    with pytest.raises(ValueError, match="ratio"):
        _masks(1, ratio=(0.6, 0.2))
