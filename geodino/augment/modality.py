"""Modality masking: hide whole sensors from a view (DINO-MM's ``RandomSensorDrop``).

A *modality* is a named group of channels (``{"s2": [0, ..., 11], "s1": [12, 13]}``), as a dataset
card lists them. During pretraining each crop independently loses, with probability ``p``, every
channel of one modality chosen uniformly, so with two modalities and ``p = 0.5`` a crop keeps both
half of the time and each one alone a quarter of the time; the teacher and the student then often
see different sensors of the same place. At evaluation a fixed choice (optical-only, SAR-only,
both) probes what each sensor contributes.

Masking happens on standardised views, so the fill value is in standardised units: the default 0
is each band's mean (DINO-MM zeroed bands scaled to [0, 1], i.e. filled with ``mean - 2 std``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from geodino.rng import RowRandom
from geodino.utils import to_device_async

Modalities = Mapping[str, Sequence[int]]


def check_modalities(modalities: Modalities, in_chans: int) -> dict[str, list[int]]:
    """Validate channel groups (non-empty, in range, disjoint) and return them as plain lists."""
    seen: dict[int, str] = {}
    groups: dict[str, list[int]] = {}
    for name, channels in modalities.items():
        channels = [int(c) for c in channels]
        if not channels:
            raise ValueError(f"modality {name!r} has no channels")
        for c in channels:
            if not 0 <= c < in_chans:
                raise ValueError(f"modality {name!r}: channel {c} out of range for {in_chans} channels")
            if c in seen:
                raise ValueError(f"channel {c} belongs to both {seen[c]!r} and {name!r}")
            seen[c] = name
        groups[str(name)] = channels
    return groups


def channel_table(modalities: Modalities, in_chans: int) -> torch.Tensor:
    """Boolean ``[num_modalities, in_chans]`` table: row ``m`` marks the channels of modality ``m``."""
    groups = check_modalities(modalities, in_chans)
    table = torch.zeros(len(groups), in_chans, dtype=torch.bool)
    for row, channels in enumerate(groups.values()):
        table[row, channels] = True
    return table


def sample_modality_drop(rng: RowRandom, views: int, num_modalities: int, p: float) -> torch.Tensor:
    """Which modality each crop loses: ``int64`` ``[views, n]`` for ``rng``'s ``n`` rows, ``-1``
    where nothing is dropped.

    Both the coin and the choice are drawn for every crop, so the draws are the same whatever
    comes up.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"modality drop probability must be in [0, 1], got {p}")
    if num_modalities < 1:
        raise ValueError("modality masking needs at least one modality")
    u = rng.rand(2, views)  # one draw: the coins, then the choices (numpy: no op on the host's path)
    which = np.minimum(np.floor(u[:, 1].T * num_modalities), num_modalities - 1).astype(np.int64)
    return torch.from_numpy(np.where(u[:, 0].T < p, which, -1))


def apply_modality_drop(
    z: torch.Tensor, dropped: torch.Tensor, table: torch.Tensor, fill: float, *, inplace: bool = False
) -> torch.Tensor:
    """Fill the channels of the modality ``dropped[i]`` of every row ``i`` of ``z`` with ``fill``.

    Args:
        z: ``[N, C, H, W]`` standardised crops, on any device.
        dropped: CPU ``int64 [N]`` from :func:`sample_modality_drop` (``-1`` keeps every channel).
        table: CPU ``[M, C]`` from :func:`channel_table`.
        fill: value written into dropped channels (standardised units).
        inplace: write into ``z`` instead of returning a new tensor.

    Returns ``z`` itself when no row drops anything or ``inplace``, otherwise a new tensor.
    """
    hit = dropped >= 0
    if not bool(hit.any()):
        return z
    # Row i's channel mask: the table row of its dropped modality, or all-False.
    mask = table[dropped.clamp_min(0)] & hit[:, None]
    mask = to_device_async(mask, z.device)[:, :, None, None]
    return z.masked_fill_(mask, fill) if inplace else z.masked_fill(mask, fill)


def apply_modality_choice(
    z: torch.Tensor,
    modalities: Modalities,
    keep: str | Sequence[str],
    fill: float = 0.0,
) -> torch.Tensor:
    """Keep only the modalities named in ``keep`` and fill every other modality's channels.

    For evaluation with a fixed input: ``keep="s2"`` (optical only), ``"s1"`` (SAR only) or
    ``"s2+s1"`` / ``["s2", "s1"]`` (both). Channels that belong to no modality are always kept.

    Args:
        z: ``[..., C, H, W]`` standardised images.
        modalities: channel groups, e.g. a dataset card's ``modalities``.
        keep: one name, names joined by ``+``, or a list of names.
        fill: value written into the hidden channels (standardised units; 0 = band mean).
    """
    groups = check_modalities(modalities, z.shape[-3])
    names = [k.strip() for k in keep.split("+")] if isinstance(keep, str) else [str(k) for k in keep]
    unknown = [k for k in names if k not in groups]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; known: {list(groups)}")
    hidden = [c for name, channels in groups.items() if name not in names for c in channels]
    out = z.clone()
    if hidden:
        out[..., hidden, :, :] = fill
    return out
