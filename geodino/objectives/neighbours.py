"""Spatial neighbours of every patch on a patch grid, and the most similar of them (SelfPatch).

The 3×3 window around a patch, minus the patch itself, on the crop's real ``h × w`` grid. A
window that crosses the border of the grid loses its outside positions: they are marked invalid,
never wrapped around to the opposite side (the SelfPatch reference code wraps and only knows
14×14 and 6×6 grids). Patches are numbered row-major, as the backbone returns them.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

# (row, column) steps to the 8 neighbours, row-major through the window.
WINDOW = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def grid_neighbours(h: int, w: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Index ``[h*w, 8]`` of each patch's neighbours and ``valid`` ``[h*w, 8]``.

    Invalid slots (outside the grid) hold the patch's own index, so that gathering with them is
    always in range; ``valid`` says which to ignore. Built once per grid and device (building it
    copies the window from the host: twice a step on a GPU otherwise, issue 14); read-only.
    """
    return _grid_neighbours(h, w, str(torch.device(device or "cpu")))


@functools.lru_cache(maxsize=64)
def _grid_neighbours(h: int, w: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.arange(h, device=device).view(h, 1).expand(h, w).reshape(-1)
    cols = torch.arange(w, device=device).view(1, w).expand(h, w).reshape(-1)
    steps = torch.tensor(WINDOW, device=device)
    r = rows[:, None] + steps[:, 0]
    c = cols[:, None] + steps[:, 1]
    valid = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    own = (rows * w + cols)[:, None].expand_as(r)
    index = torch.where(valid, r * w + c, own)
    return index, valid


@torch.no_grad()
def top_k_neighbours(tokens: torch.Tensor, grid: tuple[int, int], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` neighbours of each patch most cosine-similar to it.

    Args:
        tokens: ``[B, h*w, D]`` patch features.
        grid: ``(h, w)``.
        k: how many to keep (at most 8).

    Returns:
        ``index`` ``[B, h*w, k]`` into the patch axis, best first, and ``valid`` ``[B, h*w, k]``:
        a patch with fewer than ``k`` neighbours inside the grid (corners of a 2×2 grid, a 1×w
        grid) gets its real ones and invalid fillers.
    """
    if not 1 <= k <= len(WINDOW):
        raise ValueError(f"k must be in [1, {len(WINDOW)}], got {k}")
    b, n, _ = tokens.shape
    h, w = grid
    if n != h * w:
        raise ValueError(f"{n} tokens do not fill a {h}x{w} grid")
    index, valid = grid_neighbours(h, w, tokens.device)
    x = F.normalize(tokens.float(), dim=-1)
    similarity = torch.einsum("bnd,bnjd->bnj", x, x[:, index])  # [B, N, 8]
    similarity = similarity.masked_fill(~valid, float("-inf"))
    best = similarity.topk(k, dim=-1).indices  # invalid slots sort last
    return index.expand(b, -1, -1).gather(-1, best), valid.expand(b, -1, -1).gather(-1, best)
