"""Counter-based random numbers for the rows of a global batch.

A training step draws random parameters (crop boxes, jitter factors, modality drops, patch masks)
for every sample of the global batch. Drawing them from one sequential generator means every
process draws the whole global batch to keep its own rows: host time that grows with the number
of processes (34 ms a step at 4096 images, issue 14). Here a number is a pure function of
``(key, sample, draw, column)`` instead, so a process computes its own rows only, and one process
with the whole batch gets bit for bit the numbers N processes get for their parts.

The function is SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014; the seeder of Java's SplittableRandom and of xoshiro): the state of
element ``i`` of a draw is ``base + (i + 1) * γ`` and its output is the 64-bit finaliser of that
state, where ``base`` mixes the key with the draw's number. Each element is computed on its own,
vectorised over the whole array with 64-bit unsigned arithmetic that wraps.
"""

from __future__ import annotations

import math

import numpy as np

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15  # the golden-ratio increment of SplitMix64
DRAW_GAMMA = 0xD1B54A32D192ED03  # separates the draws of one key (an odd constant from the same family)
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def mix64(z: int) -> int:
    """The SplitMix64 finaliser of one Python integer (the reference the array version follows)."""
    z &= MASK
    z = ((z ^ (z >> 30)) * _MIX1) & MASK
    z = ((z ^ (z >> 27)) * _MIX2) & MASK
    return z ^ (z >> 31)


def _mix64_array(z: np.ndarray) -> np.ndarray:
    # numpy's uint64 arithmetic wraps and its right shift is logical: SplitMix64 as written.
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


def step_key(seed: int, step: int) -> int:
    """The random key of a training step: with a sample's index in the global batch it decides that
    sample's crops and masks (:class:`RowRandom`), whatever the number of processes."""
    return seed * 1_000_003 + step


class RowRandom:
    """Random numbers for rows ``[offset, offset + n)`` of a global batch, keyed by ``key``.

    Each call is one draw with its own number (0, 1, 2, ... in call order) and returns an array
    ``[n, *shape]`` whose row ``r`` depends only on ``(key, offset + r, draw, shape)``: callers keep
    the order and shapes of their calls independent of the values drawn, and any split of the
    global batch across processes sees the same numbers.

    The arithmetic runs in numpy on the host, where these parameters are used: a few dozen
    numpy operations per step, no torch op (each of which would be a dispatch, and counted as
    one by ``geodino bench host``). Callers draw all the numbers one view needs in one call.
    """

    def __init__(self, key: int, offset: int, n: int) -> None:
        if offset < 0 or n < 0:
            raise ValueError(f"rows need offset >= 0 and n >= 0, got offset={offset}, n={n}")
        self.key, self.offset, self.n = int(key) & MASK, int(offset), int(n)
        self.draws = 0
        self._rows = np.arange(self.offset, self.offset + self.n, dtype=np.uint64)[:, None]

    def bits(self, *shape: int) -> np.ndarray:
        """Uniform 64-bit patterns, uint64 ``[n, *shape]``."""
        columns = math.prod(shape)
        base = mix64(self.key * GAMMA + (self.draws + 1) * DRAW_GAMMA)
        self.draws += 1
        with np.errstate(over="ignore"):
            index = self._rows * np.uint64(columns) + np.arange(1, columns + 1, dtype=np.uint64)
            state = index * np.uint64(GAMMA) + np.uint64(base)
            return _mix64_array(state).reshape(self.n, *shape)

    def rand(self, *shape: int) -> np.ndarray:
        """Uniform float64 in ``[0, 1)``, ``[n, *shape]``: the top 53 bits of :meth:`bits`."""
        return (self.bits(*shape) >> np.uint64(11)).astype(np.float64) * 2.0**-53
