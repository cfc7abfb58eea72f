"""Blockwise patch masks for masked-patch objectives (BEiT, iBOT, DINOv2).

Each masked crop gets a target count ``round(ratio × h·w)`` and is covered by random rectangles
(area between ``min_block`` and what is still missing, aspect ratio log-uniform in
``[min_aspect, 1/min_aspect]``), each placed only where it adds at least one and at most the
missing number of patches — the BEiT rule. When no rectangle fits any more (a small grid,
an awkward remainder) the missing patches are added one at a time at random, so that a crop's
count is always exactly its target.

Randomness: the draws come from counter-based numbers keyed by the step and the sample's index in
the global batch (:class:`~geodino.rng.RowRandom`), in a fixed order (which crops are masked, their
ratios, one seed per crop); each crop's rectangles come from its own seed. A process that holds
rows ``[offset, offset + batch)`` draws and builds only those rows and gets exactly what a single
process would for them.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from geodino.rng import RowRandom

MIN_ASPECT = 0.3  # rectangles' aspect ratio is log-uniform in [MIN_ASPECT, 1 / MIN_ASPECT] (BEiT's)


def block_mask(h: int, w: int, count: int, rng: random.Random, min_block: int = 4,
               min_aspect: float = MIN_ASPECT) -> torch.Tensor:
    """A boolean ``[h, w]`` mask with exactly ``count`` patches set, in rectangles where possible."""
    if not 0 <= count <= h * w:
        raise ValueError(f"cannot mask {count} of {h * w} patches")
    # numpy, not torch, for the many tiny slices: a torch op on a few elements costs ~10x more
    # (the masks of one step took 15 ms at 64 images, 143 ms at 1024; BENCHMARKS.md).
    return torch.from_numpy(_fill_blocks(np.zeros((h, w), dtype=bool), count, rng, min_block, min_aspect))


def _fill_blocks(mask: np.ndarray, count: int, rng: random.Random, min_block: int, min_aspect: float) -> np.ndarray:
    """Set exactly ``count`` patches of the all-False ``mask`` (in place), as :func:`block_mask` says."""
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    done = 0
    while done < count:
        added = _add_block(mask, count - done, rng, min_block, log_aspect)
        if added == 0:
            break
        done += added
    if done < count:  # top up patch by patch
        flat = mask.reshape(-1)
        free = np.flatnonzero(~flat).tolist()
        for i in rng.sample(free, count - done):
            flat[i] = True
    return mask


def _add_block(mask: np.ndarray, missing: int, rng: random.Random, min_block: int,
               log_aspect: tuple[float, float]) -> int:
    h, w = mask.shape
    for _ in range(10):  # attempts, as in BEiT
        area = rng.uniform(min_block, missing)
        aspect = math.exp(rng.uniform(*log_aspect))
        bh = int(round(math.sqrt(area * aspect)))
        bw = int(round(math.sqrt(area / aspect)))
        if not (1 <= bh <= h and 1 <= bw <= w):
            continue
        top, left = rng.randint(0, h - bh), rng.randint(0, w - bw)
        block = mask[top : top + bh, left : left + bw]
        new = bh * bw - int(block.sum())
        if 0 < new <= missing:
            block[...] = True
            return new
    return 0


def sample_block_masks(
    n_views: int,
    grid: tuple[int, int],
    rng: RowRandom,
    probability: float = 0.5,
    ratio: tuple[float, float] = (0.1, 0.5),
    min_block: int = 4,
) -> torch.Tensor:
    """Masks ``[n_views, n, h, w]`` for ``rng``'s ``n`` rows of a global batch.

    Each crop is masked with ``probability``, with a ratio uniform in ``ratio``; an unmasked
    crop's mask is all ``False``. A row's masks depend only on the key and its global index.
    """
    lo, hi = ratio
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"ratio must be [low, high] within [0, 1], got {ratio}")
    h, w = grid
    u = rng.rand(2, n_views)  # one draw: which crops are masked, then their ratios
    chosen = u[:, 0] < probability
    ratios = (lo + (hi - lo) * u[:, 1]).tolist()  # Python numbers: no op per crop
    seeds = rng.bits(n_views).tolist()
    masks = np.zeros((n_views, rng.n, h, w), dtype=bool)
    for i, v in zip(*np.nonzero(chosen)):
        count = int(round(ratios[i][v] * h * w))
        _fill_blocks(masks[v, i], count, random.Random(seeds[i][v]), min_block, MIN_ASPECT)
    return torch.from_numpy(masks)
