"""Spatial neighbours of every patch on a patch grid, and the most similar of them (SelfPatch).

The 3×3 window around a patch, minus the patch itself, on the crop's real ``h × w`` grid. A
window that crosses the border of the grid loses its outside positions: they are marked invalid,
never wrapped around to the opposite side (the SelfPatch reference code wraps and only knows
14×14 and 6×6 grids). Patches are numbered row-major, as the backbone returns them.
"""

from __future__ import annotations

import functools

import torch

from geodino.utils import at_least_float32

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


def row_neighbours(layout: tuple[tuple[int, int, int], ...], device: torch.device | str | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`grid_neighbours` for token rows: ``layout`` is runs of ``(items, h, w)``, each item's
    ``h*w`` patches one after another, the runs one after another (the patch tokens of every crop of
    a step, flattened). Returns ``index`` ``[R, 8]`` into those rows and ``valid`` ``[R, 8]``; built
    once per layout and device (a few, since the batch size rarely changes); read-only."""
    return _row_neighbours(tuple(layout), str(torch.device(device or "cpu")))


@functools.lru_cache(maxsize=16)
def _row_neighbours(layout: tuple[tuple[int, int, int], ...], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    indexes, valids, start = [], [], 0
    for items, h, w in layout:
        index, valid = grid_neighbours(h, w, device)
        first = start + torch.arange(items, device=device).view(items, 1, 1) * (h * w)
        indexes.append((index + first).reshape(-1, len(WINDOW)))
        valids.append(valid.expand(items, -1, -1).reshape(-1, len(WINDOW)))
        start += items * h * w
    return torch.cat(indexes), torch.cat(valids)


@torch.no_grad()
def top_k_neighbour_rows(rows: torch.Tensor, layout: tuple[tuple[int, int, int], ...], k: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` neighbours of each patch most cosine-similar to it, for token rows.

    Args:
        rows: ``[R, D]`` patch features, laid out as ``layout`` says (:func:`row_neighbours`).
        layout: runs of ``(items, h, w)``.
        k: how many to keep (at most 8).

    Returns:
        ``index`` ``[R, k]`` into ``rows``, best first, and ``valid`` ``[R, k]``: a patch with fewer
        than ``k`` neighbours inside its grid (corners of a 2×2 grid, a 1×w grid) gets its real
        ones and invalid fillers.
    """
    if not 1 <= k <= len(WINDOW):
        raise ValueError(f"k must be in [1, {len(WINDOW)}], got {k}")
    expected = sum(items * h * w for items, h, w in layout)
    if rows.shape[0] != expected:
        raise ValueError(f"{rows.shape[0]} token rows do not fill the grids {list(layout)} ({expected} rows)")
    index, valid = row_neighbours(layout, rows.device)
    x = at_least_float32(rows)
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # F.normalize, in one op fewer
    similarity = torch.einsum("nd,njd->nj", x, x[index])  # [R, 8]
    similarity = torch.where(valid, similarity, float("-inf"))
    best = similarity.topk(k, dim=-1).indices  # invalid slots sort last
    return index.gather(-1, best), valid.gather(-1, best)


def top_k_neighbours(tokens: torch.Tensor, grid: tuple[int, int], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`top_k_neighbour_rows` for ``[B, h*w, D]`` tokens of one ``(h, w)`` grid: ``index``
    ``[B, h*w, k]`` into the patch axis of each item, and ``valid`` ``[B, h*w, k]``."""
    b, n, _ = tokens.shape
    h, w = grid
    if n != h * w:
        raise ValueError(f"{n} tokens do not fill a {h}x{w} grid")
    index, valid = top_k_neighbour_rows(tokens.reshape(b * n, -1), ((b, h, w),), k)
    first = torch.arange(b, device=index.device).view(b, 1, 1) * n
    return index.view(b, n, k) - first, valid.view(b, n, k)
