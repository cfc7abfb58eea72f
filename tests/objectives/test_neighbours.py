"""Neighbour windows on patch grids, worked out by hand; top-k by cosine similarity."""

import math

import pytest
import torch

from geodino.objectives.neighbours import grid_neighbours, top_k_neighbours

# A 3x4 grid, row-major:
#    0  1  2  3
#    4  5  6  7
#    8  9 10 11
# Window order: up-left, up, up-right, left, right, down-left, down, down-right.
BY_HAND = {
    0: [None, None, None, None, 1, None, 4, 5],  # top-left corner
    3: [None, None, None, 2, None, 6, 7, None],  # top-right corner: no wrap to 0, 4 or 8
    5: [0, 1, 2, 4, 6, 8, 9, 10],  # interior
    7: [2, 3, None, 6, None, 10, 11, None],  # right edge: no wrap to 4 or 8
    8: [None, 4, 5, None, 9, None, None, None],  # bottom-left corner
    9: [4, 5, 6, 8, 10, None, None, None],  # bottom edge
    11: [6, 7, None, 10, None, None, None, None],  # bottom-right corner
}


def test_neighbours_on_a_3x4_grid_by_hand():
    index, valid = grid_neighbours(3, 4)
    assert index.shape == valid.shape == (12, 8)
    for patch, expected in BY_HAND.items():
        assert valid[patch].tolist() == [n is not None for n in expected], patch
        assert index[patch].tolist() == [patch if n is None else n for n in expected], patch
    assert valid.sum(1).view(3, 4).tolist() == [[3, 5, 5, 3], [5, 8, 8, 5], [3, 5, 5, 3]]


@pytest.mark.parametrize("h,w", [(7, 7), (2, 3), (1, 5), (4, 1), (1, 1), (5, 9)])
def test_any_grid_matches_brute_force(h, w):
    index, valid = grid_neighbours(h, w)
    for r in range(h):
        for c in range(w):
            expected = {(r + dr) * w + (c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                        if (dr, dc) != (0, 0) and 0 <= r + dr < h and 0 <= c + dc < w}
            n = r * w + c
            assert set(index[n][valid[n]].tolist()) == expected
            assert int(valid[n].sum()) == len(expected)


def _at_angles(degrees):
    return torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in degrees])


def test_top_k_keeps_the_most_similar_valid_neighbours_best_first():
    # Patch 5's neighbours 0,1,2,4,6,8,9,10 at angles chosen so that the order is 6, 9, 1, 4.
    angles = [90, 30, 100, 170, 40, 0, 10, 120, 130, 20, 95, 175]
    lengths = torch.tensor([1.0, 3.0] * 6).view(1, 12, 1)  # cosine similarity ignores lengths
    tokens = _at_angles(angles).unsqueeze(0) * lengths
    index, valid = top_k_neighbours(tokens, (3, 4), k=4)
    assert index.shape == valid.shape == (1, 12, 4)
    assert index[0, 5].tolist() == [6, 9, 1, 4]
    assert valid[0, 5].all()
    # The top-left corner has 3 neighbours (1, 4, 5): all kept, then one invalid filler.
    assert valid[0, 0].tolist() == [True, True, True, False]
    assert set(index[0, 0, :3].tolist()) == {1, 4, 5}


def test_top_k_never_picks_across_the_border():
    # Make the wrapped-around patches the most similar ones: they must still not be chosen.
    tokens = torch.randn(1, 12, 8)
    tokens[0, 4] = tokens[0, 0] = tokens[0, 8] = tokens[0, 3]  # identical to patch 3 (left edge vs right edge)
    index, valid = top_k_neighbours(tokens, (3, 4), k=3)
    assert set(index[0, 3][valid[0, 3]].tolist()) <= {2, 6, 7}
    assert valid[0, 3].all()


def test_top_k_batches_and_checks_its_input():
    index, valid = top_k_neighbours(torch.randn(3, 6, 4), (2, 3), k=8)
    assert index.shape == (3, 6, 8)
    assert valid.sum(-1).tolist() == [[3, 5, 3, 3, 5, 3]] * 3  # k > real neighbours: fillers marked
    with pytest.raises(ValueError, match="grid"):
        top_k_neighbours(torch.randn(1, 5, 4), (2, 3), k=2)
    with pytest.raises(ValueError, match="k must be"):
        top_k_neighbours(torch.randn(1, 6, 4), (2, 3), k=9)


def test_the_neighbour_table_is_built_once_per_grid_and_device():
    from geodino.objectives.neighbours import grid_neighbours

    first, second = grid_neighbours(5, 7, "cpu"), grid_neighbours(5, 7, torch.device("cpu"))
    assert first[0] is second[0] and first[1] is second[1]  # no host-to-device copy per step
    assert grid_neighbours(5, 6)[0] is not first[0]


def test_rows_of_several_grids_get_the_neighbours_of_their_own_grid():
    # One pass over the token rows of crops of two grids finds, for every patch, what each grid
    # alone finds, offset to the rows of its crop and image.
    from geodino.objectives.neighbours import top_k_neighbour_rows

    torch.manual_seed(0)
    a, b = torch.randn(2, 12, 8), torch.randn(3, 4, 8)
    index, valid = top_k_neighbour_rows(torch.cat([a.reshape(-1, 8), b.reshape(-1, 8)]), ((2, 4, 3), (3, 2, 2)), 3)
    for tokens, grid, start in ((a, (4, 3), 0), (b, (2, 2), 24)):
        alone, alone_valid = top_k_neighbours(tokens, grid, 3)
        n = tokens.shape[1]
        first = start + torch.arange(tokens.shape[0]).view(-1, 1, 1) * n
        rows = slice(start, start + tokens.shape[0] * n)
        assert torch.equal(index[rows], (alone + first).reshape(-1, 3))
        assert torch.equal(valid[rows], alone_valid.reshape(-1, 3))
    with pytest.raises(ValueError, match="do not fill"):
        top_k_neighbour_rows(torch.randn(5, 8), ((2, 2, 2),), 3)
