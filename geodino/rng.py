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
vectorised over the whole tensor with 64-bit integer arithmetic that wraps (two's complement).
"""

from __future__ import annotations

import math

import torch

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15  # the golden-ratio increment of SplitMix64
DRAW_GAMMA = 0xD1B54A32D192ED03  # separates the draws of one key (an odd constant from the same family)
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _signed(value: int) -> int:
    """A 64-bit pattern as the signed integer torch's int64 holds."""
    value &= MASK
    return value - (1 << 64) if value >> 63 else value


def mix64(z: int) -> int:
    """The SplitMix64 finaliser of one Python integer (the reference the tensor version follows)."""
    z &= MASK
    z = ((z ^ (z >> 30)) * _MIX1) & MASK
    z = ((z ^ (z >> 27)) * _MIX2) & MASK
    return z ^ (z >> 31)


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` keeps the sign bit)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix64_tensor(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _shift_right(z, 30)) * _signed(_MIX1)
    z = (z ^ _shift_right(z, 27)) * _signed(_MIX2)
    return z ^ _shift_right(z, 31)


class RowRandom:
    """Random numbers for rows ``[offset, offset + n)`` of a global batch, keyed by ``key``.

    Each call is one draw with its own number (0, 1, 2, ... in call order) and returns a tensor
    ``[n, *shape]`` whose row ``r`` depends only on ``(key, offset + r, draw, shape)``: callers keep
    the order and shapes of their calls independent of the values drawn, and any split of the
    global batch across processes sees the same numbers.
    """

    def __init__(self, key: int, offset: int, n: int) -> None:
        if offset < 0 or n < 0:
            raise ValueError(f"rows need offset >= 0 and n >= 0, got offset={offset}, n={n}")
        self.key, self.offset, self.n = int(key) & MASK, int(offset), int(n)
        self.draws = 0

    def split(self, start: int, stop: int) -> RowRandom:
        """The same key for the global rows ``[offset + start, offset + stop)``, at draw 0."""
        return RowRandom(self.key, self.offset + start, stop - start)

    def bits(self, *shape: int) -> torch.Tensor:
        """Uniform 64-bit patterns as int64 ``[n, *shape]`` (any sign)."""
        columns = math.prod(shape)
        base = mix64(self.key * GAMMA + (self.draws + 1) * DRAW_GAMMA)
        self.draws += 1
        index = (torch.arange(self.offset, self.offset + self.n, dtype=torch.int64)[:, None] * columns
                 + torch.arange(columns, dtype=torch.int64) + 1)
        state = index * _signed(GAMMA) + _signed(base)
        return _mix64_tensor(state).reshape(self.n, *shape)

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform float64 in ``[0, 1)``, ``[n, *shape]``: the top 53 bits of :meth:`bits`."""
        return _shift_right(self.bits(*shape), 11).to(torch.float64) * 2.0**-53

    def uniform(self, low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * self.rand(*shape)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        """Integers uniform in ``[0, high)`` (int64), from :meth:`rand` (bias below 2**-53 · high)."""
        return (self.rand(*shape) * high).floor().to(torch.int64).clamp_max(high - 1)
