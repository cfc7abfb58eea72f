"""Counter-based random numbers: the array arithmetic matches SplitMix64 computed with Python's
exact integers, any split of the rows sees the same numbers, and the numbers look uniform."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geodino.rng import DRAW_GAMMA, GAMMA, MASK, RowRandom, mix64


def test_mix64_is_splitmix64() -> None:
    # The first outputs of SplitMix64 seeded with 0 (as in Vigna's reference splitmix64.c): the
    # finaliser of 1·γ, 2·γ, 3·γ.
    assert [mix64(i * GAMMA) for i in (1, 2, 3)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_array_bits_equal_the_exact_integer_reference() -> None:
    key, offset, n, columns = 123456789012345, 1000, 5, 3
    rng = RowRandom(key, offset, n)
    rng.bits(2)  # draw 0; the reference below is draw 1
    got = rng.bits(columns)
    base = mix64(key * GAMMA + 2 * DRAW_GAMMA)
    for r in range(n):
        for c in range(columns):
            expected = mix64(base + ((offset + r) * columns + c + 1) * GAMMA)
            assert int(got[r, c]) & MASK == expected


def test_any_split_of_the_rows_sees_the_same_numbers() -> None:
    whole = RowRandom(7, 0, 12)
    parts = [RowRandom(7, start, stop - start) for start, stop in ((0, 5), (5, 6), (6, 12))]
    for shape in ((), (4,), (2, 3)):
        expected = whole.rand(*shape)
        assert np.array_equal(np.concatenate([p.rand(*shape) for p in parts]), expected)
    assert np.array_equal(RowRandom(7, 5, 1).rand(), RowRandom(7, 0, 12).rand()[5:6])


def test_keys_and_draws_differ_and_values_look_uniform() -> None:
    a, b = RowRandom(1, 0, 50_000), RowRandom(2, 0, 50_000)
    x, y = a.rand(), b.rand()
    assert not np.array_equal(x, y) and not np.array_equal(x, a.rand())
    assert x.min() >= 0 and x.max() < 1
    tol = 5 / math.sqrt(12 * 50_000)
    assert abs(x.mean() - 0.5) < tol and abs(np.corrcoef(x, y)[0, 1]) < 0.02
    # a choice among 6 as modality drops make it: floor(6 u)
    choices = np.minimum(np.floor(RowRandom(3, 0, 60_000).rand() * 6), 5).astype(np.int64)
    counts = np.bincount(choices, minlength=6)
    assert (np.abs(counts - 10_000) < 5 * math.sqrt(10_000)).all()
    with pytest.raises(ValueError, match="offset"):
        RowRandom(0, -1, 3)
