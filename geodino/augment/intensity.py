"""Intensity ops of the DINO recipe, batched with per-sample parameters, for 3 or any number of bands.

Every op works in a *unit space* where the "dark" end of a band is 0 and its "bright" end 1:

- ``mode="rgb"``: the raw image in [0, 1] itself. The ops are torchvision's ``ColorJitter``
  (brightness, contrast, saturation, hue, in a random order per sample, clamped to [0, 1] after
  each), ``RandomGrayscale`` (ITU-R 601 luma copied to the three channels), Gaussian blur and
  PIL's ``solarize`` at 128/255; then ``z = (x - mean) / std``.
- ``mode="multispectral"``: per band ``u = (x - (mean - 2 std)) / (4 std)``, so [0, 1] spans the
  band's mean +- 2 std and the standardised value is ``z = 4 u - 2``. Band-agnostic versions of
  the ops, as DINO-MM used them: brightness multiplies every band by one factor (``u * b``),
  contrast blends every band toward one per-sample mean over all bands and pixels, grayscale
  copies the mean over bands into every band, solarize reflects ``u >= 0.5`` to ``1 - u`` (the
  upper half of the data's own range, i.e. ``z >= 0`` becomes ``-z``). There is no saturation or
  hue (they need a colour model) and nothing is clipped: values outside mean +- 2 std (bright
  clouds, SAR dB tails) pass through untouched in shape. Without clipping, brightness and contrast
  commute, so their order does not matter and one fused op applies both.

``band_ops="physical"`` (issue 13) replaces three of those ops with versions that respect what the
bands measure, since the joint ones change a multispectral image in ways no sensor does:

- brightness is a gain on the physical quantity: reflectances and digital numbers are multiplied
  by ``b`` (``x -> b x``, a change of illumination; in unit space an affine map whose offset
  depends on the band's mean and std), bands in dB are shifted by ``10 log10 b`` (the same gain on
  backscatter power). The joint version scales ``u`` around ``mean - 2 std``, which in raw units
  adds a band-dependent offset and so changes the spectrum's shape, the very cue that separates
  many land covers;
- contrast blends each band toward its own mean over the view (joint: toward one mean over all
  bands, which pulls every band toward the same value and flattens the spectrum);
- grayscale copies, within each modality, the mean over that modality's bands (joint: one mean
  over SAR and optical bands together, which writes optical values into the SAR bands).

Blur and solarize are the same in both.

Blur is a Gaussian with a per-sample sigma and a fixed kernel of ``2 * ceil(3 * sigma_max) + 1``
taps (13 for sigma up to 2): +-3 sigma holds 99.7 % of the weight, about the extent PIL's
``GaussianBlur(radius=sigma)`` (used by the DINO reference) covers with its box passes.

Ops apply to a subset of rows. The subset is decided on the CPU from the parameters, so selecting
rows never reads a device tensor back (no host/device synchronisation on a GPU), and only the
selected rows are computed. The exception is the multispectral jitter, which most rows take
(``jitter_p`` 0.8): it runs over every row, in place, the others with factors that leave them as
they are. Gathering and scattering the selected rows would cost two launches and as many passes
over them as the one elementwise pass it saves on the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import torch
import torch.nn.functional as F

from geodino.augment.params import JITTER_OPS
from geodino.utils import to_device_async

RowOp = Callable[[torch.Tensor, Union[torch.Tensor, None]], torch.Tensor]
HostArray = Union[np.ndarray, torch.Tensor]  # per-row values on the host: numpy, or a CPU tensor


@dataclass
class Pass:
    """One op over a subset of rows: ``op(x[rows], params[rows])`` written back to those rows.

    ``selected``: host ``bool [N]``, the rows it applies to. ``params``: host ``[N, m]`` values per
    row (or None), which ``op`` receives for its rows as ``[k, m]`` on ``x``'s device and dtype.
    """

    selected: HostArray
    op: RowOp
    params: HostArray | None = None


def run_passes(x: torch.Tensor, passes: list[Pass]) -> torch.Tensor:
    """Apply ``passes`` to ``x`` in order, in place.

    Which rows each pass takes, and their parameters, are known on the host before any of them
    runs, so all of them go to ``x``'s device in one copy (on a GPU, one transfer per view group
    instead of one or two per pass; ``geodino bench host``). Each pass computes only its rows.
    """
    staged = _Staging(x.dtype)
    plans = []
    for p in passes:
        rows = np.flatnonzero(np.asarray(p.selected))
        if rows.size == 0:
            continue
        every = rows.size == x.shape[0]
        at_rows = None if every else staged.add(rows.astype(np.int64))
        at_params = None if p.params is None else staged.add(np.asarray(p.params)[rows].reshape(rows.size, -1))
        plans.append((p.op, rows.size, at_rows, at_params))
    device_buffer = staged.to(x.device)
    for op, k, at_rows, at_params in plans:
        params = None if at_params is None else staged.read(device_buffer, at_params, x.dtype).view(k, -1)
        if at_rows is None:
            out = op(x, params)
            if out is not x:  # (an op over every row may work in place)
                x.copy_(out)
        else:
            rows = staged.read(device_buffer, at_rows, torch.int64)
            x.index_copy_(0, rows, op(x.index_select(0, rows), params))
    return x


_TORCH_TYPES = {np.int64: torch.int64, np.float16: torch.float16, np.float32: torch.float32, np.float64: torch.float64}


class _Staging:
    """Host arrays packed into one byte buffer (each part 8-byte aligned), copied once, and read
    back on the device as typed views of that copy."""

    def __init__(self, dtype: torch.dtype) -> None:
        # Parameters are cast on the host to the images' dtype when numpy has it (float32, float64).
        self.float_type = {t: n for n, t in _TORCH_TYPES.items() if t.is_floating_point}.get(dtype)
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, values: np.ndarray) -> tuple[int, int, torch.dtype]:
        if values.dtype != np.int64:
            values = values.astype(self.float_type or np.float32)
        raw = np.ascontiguousarray(values).reshape(-1).view(np.uint8)
        where = (self.size, raw.size, _TORCH_TYPES[values.dtype.type])
        self.parts.append(raw)
        padding = -raw.size % 8
        if padding:
            self.parts.append(np.zeros(padding, dtype=np.uint8))
        self.size += raw.size + padding
        return where

    def to(self, device: torch.device) -> torch.Tensor | None:
        if not self.parts:
            return None
        return to_device_async(torch.from_numpy(np.concatenate(self.parts)), device)

    @staticmethod
    def read(buffer: torch.Tensor, where: tuple[int, int, torch.dtype], dtype: torch.dtype) -> torch.Tensor:
        start, size, stored = where
        values = buffer[start : start + size].view(stored)
        return values if stored == dtype else values.to(dtype)  # bfloat16 images: one cast


# ---------------------------------------------------------------- colour jitter



def rgb_color_jitter_passes(jitter: HostArray, factors: HostArray, order: HostArray) -> list[Pass]:
    """torchvision ``ColorJitter`` on ``[N, 3, H, W]`` images in [0, 1], a random op order per row.

    Args:
        jitter: host ``bool [N]``, rows to jitter.
        factors: host ``[N, 4]`` brightness, contrast, saturation factors and hue shift (turns).
        order: host ``int64 [N, 4]``, per row a permutation of the four ops.

    Brightness, contrast and saturation are one blend, ``x f + ref (1 - f)`` clamped to [0, 1],
    toward a different reference: 0, the mean gray level, the gray image (kornia's formulas). So
    at each of the four positions of the order, one blend pass takes every row, each with its own
    factor and reference (rows whose op there is hue or a no-op, or that are not jittered, with
    ``f = 1``: ``x`` exactly, as the images are already in [0, 1]), and one hue pass the rows whose
    op there is hue. 8 passes, where one per op and position would be 16.
    """
    jitter, factors, order = np.asarray(jitter, dtype=bool), np.asarray(factors, dtype=np.float64), np.asarray(order)
    # A factor equal to identity is a no-op (torchvision skips an op whose strength is 0).
    active = factors != np.array([1.0, 1.0, 1.0, 0.0])
    contrast, saturation, hue_op = (JITTER_OPS.index(op) for op in ("contrast", "saturation", "hue"))
    every = np.arange(len(order))
    passes = []
    for step in range(len(JITTER_OPS)):
        op_at = order[:, step]
        takes = jitter & active[every, op_at]
        factor_at = factors[every, op_at]
        blends = takes & (op_at != hue_op)
        if blends.any():
            # Per row: the factor, then the weights (1 - f) of the gray image and of its mean.
            f = np.where(blends, factor_at, 1.0)
            table = np.stack([f, (1 - f) * (op_at == saturation), (1 - f) * (op_at == contrast)], axis=1)
            passes.append(Pass(np.ones_like(blends), _blend, table))
        passes.append(Pass(takes & (op_at == hue_op), _hue, _HUE_RAMPS + 6.0 * factor_at[:, None]))
    return passes


def _blend(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    f, to_gray, to_mean = table.view(len(x), 3, 1, 1, 1).unbind(1)
    gray = luma(x)
    ref = torch.addcmul(gray.mean((-2, -1), keepdim=True) * to_mean, gray, to_gray)  # (1 - f) ref
    return torch.addcmul(ref, x, f, out=x).clamp_(0.0, 1.0)


#: Where each channel's ramp sits on the hue circle, in sixths of a turn (R, G, B): channel ``c``
#: of a colour of hue ``h`` (turns) is ``V - C clamp(min(k, 4 - k), 0, 1)`` with ``k = (n_c + 6 h)
#: mod 6``, ``V`` the largest channel and ``C`` the largest less the smallest (HSV to RGB).
_HUE_RAMPS = np.array([5.0, 3.0, 1.0])


def _hue(x: torch.Tensor, ramps: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of ``[k, 3, H, W]`` rows in [0, 1]; ``ramps`` ``[k, 3]`` is ``_HUE_RAMPS``
    plus 6 times each row's shift (turns). Value and saturation stay.

    Ours because kornia's ``adjust_hue`` (an RGB -> HSV -> RGB round trip) launches ~76 kernels
    per call, 8 calls per step (640 of the rgb recipe's 830 augmentation launches per step,
    ``geodino bench host --card imagenet``), and this 14: the hue in sixths of a turn is
    ``2 c + (x[c+1] - x[c+2]) / C`` for the largest channel ``c``, worked out for all three
    channels and gathered at the largest; from it every output channel is one ramp.
    """
    k, _, height, width = x.shape
    value, top = x.max(dim=1, keepdim=True)
    chroma = value - x.amin(dim=1, keepdim=True)
    ahead = x.index_select(1, _device_constant((1, 2, 0, 2, 0, 1), x.device, torch.int64)).view(k, 2, 3, height, width)
    # Gray pixels (C = 0) have every difference 0: the clamp keeps their hue finite, their output V.
    sextants = torch.addcdiv(_device_constant((0.0, 2.0, 4.0), x.device, x.dtype).view(1, 3, 1, 1),
                             ahead[:, 0] - ahead[:, 1], chroma.clamp_min(torch.finfo(x.dtype).tiny))
    ramp = torch.remainder(sextants.gather(1, top) + ramps.view(k, 3, 1, 1), 6.0)
    return torch.addcmul(value, chroma, torch.minimum(ramp, 4.0 - ramp).clamp_(0.0, 1.0), value=-1.0)


_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision and kornia weigh R, G and B
_CONSTANTS: dict[tuple, torch.Tensor] = {}


def _device_constant(values: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``values`` as a tensor on ``device``, made once per device and dtype (kornia makes its
    constants on every call: several launches each)."""
    key = (values, device, dtype)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = to_device_async(torch.tensor(values, dtype=dtype), device)
    return _CONSTANTS[key]


def luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of ``[N, 3, H, W]`` RGB rows: ``[N, 1, H, W]`` (2 launches)."""
    return (x * _device_constant(_LUMA, x.device, x.dtype).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def _finite(mean: torch.Tensor) -> torch.Tensor:
    """``mean`` with non-finite entries as 0, in place: a row not jittered (mean weight 0) must
    come back exactly, and ``inf * 0`` is NaN. (A non-finite mean comes from a non-finite pixel,
    or from a float32 sum that overflowed; the readers refuse the first, a jittered row keeps it.)"""
    return mean.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def multispectral_jitter_passes(jitter: HostArray, factors: HostArray) -> list[Pass]:
    """One brightness and one contrast factor for all bands, in unit space, no clipping.

    ``u -> b * (c * u + (1 - c) * mean(u))`` with the mean over all bands and pixels of the row;
    scaling commutes with blending toward the mean, so this equals either order of the two ops.
    Written ``u -> (b c) u + b (1 - c) mean(u)``, coefficients worked out on the host: three
    launches. Every row goes through it in place; rows not jittered with ``b = c = 1``, which
    leaves them exactly as they are.
    """
    jitter = np.asarray(jitter, dtype=bool)
    if not jitter.any():
        return []
    b, c = (np.where(jitter, f, 1.0) for f in np.asarray(factors, dtype=np.float64)[:, :2].T)

    def op(x: torch.Tensor, coefs: torch.Tensor) -> torch.Tensor:
        scale, mean_weight = coefs.view(len(x), 2, 1, 1, 1).unbind(1)
        level = _finite(x.mean(dim=(1, 2, 3), keepdim=True)) * mean_weight
        return torch.addcmul(level, x, scale, out=x)

    return [Pass(np.ones_like(jitter), op, np.stack([b * c, b * (1 - c)], axis=1))]



def physical_jitter_passes(jitter: HostArray, factors: HostArray, gain_offset: HostArray, db_step: HostArray,
                           is_db: HostArray) -> list[Pass]:
    """Brightness as a gain on each band's physical quantity and contrast toward each band's mean.

    Per band ``k`` in unit space: a linear-unit band maps ``u -> b u + (b - 1) gain_offset[k]``
    (``gain_offset = (mean - 2 std) / (4 std)``, i.e. ``x -> b x`` in raw units); a dB band maps
    ``u -> u + log10(b) db_step[k]`` (``db_step = 10 / (4 std)``, i.e. ``x -> x + 10 log10 b``).
    Contrast ``c`` blends each band toward its own mean over the view's pixels. Both maps are
    affine per band, so they commute, and together they are ``u -> A u + B mean_k(u) + S`` with
    per row and band coefficients worked out on the host (three launches). Like the joint
    jitter, every row goes through it in place, rows not jittered with the identity.

    Args:
        gain_offset, db_step: ``[C]`` per-band constants, on the host.
        is_db: host ``bool [C]``, the bands whose unit is dB.
    """
    jitter = np.asarray(jitter, dtype=bool)
    if not jitter.any():
        return []
    b, c = (np.where(jitter, f, 1.0)[:, None] for f in np.asarray(factors, dtype=np.float64)[:, :2].T)
    lin = ~np.asarray(is_db, dtype=bool)[None, :]
    offset = np.asarray(gain_offset, dtype=np.float64)[None, :]
    step = np.asarray(db_step, dtype=np.float64)[None, :]
    scale = np.where(lin, b, 1.0)
    shift = np.where(lin, (b - 1) * offset, np.log10(b) * step)
    bands = offset.shape[1]

    def op(x: torch.Tensor, coefs: torch.Tensor) -> torch.Tensor:
        gain, mean_weight, bias = coefs.view(len(x), 3, bands, 1, 1).unbind(1)
        level = torch.addcmul(bias, _finite(x.mean(dim=(2, 3), keepdim=True)), mean_weight)
        return torch.addcmul(level, x, gain, out=x)

    return [Pass(np.ones_like(jitter), op, np.concatenate([scale * c, scale * (1 - c), shift], axis=1))]


# ---------------------------------------------------------------- grayscale, blur, solarize



def rgb_grayscale_passes(selected: HostArray) -> list[Pass]:
    """ITU-R 601 luma of the selected rows, copied to all three channels."""
    return [Pass(selected, lambda sub, _: luma(sub).expand_as(sub))]



def band_mean_grayscale_passes(selected: HostArray) -> list[Pass]:
    """Mean over all bands of the selected rows, copied to every band."""
    return [Pass(selected, lambda sub, _: sub.mean(dim=1, keepdim=True).expand_as(sub))]



def modality_grayscale_passes(selected: HostArray, groups: list[list[int]]) -> list[Pass]:
    """Per group of bands (a modality), the mean over the group copied to its bands."""
    def op(sub: torch.Tensor, _: None) -> torch.Tensor:
        out = sub.clone()
        for channels in groups:
            out[:, channels] = sub[:, channels].mean(dim=1, keepdim=True)
        return out

    return [Pass(selected, op)]


def blur_kernel_size(sigma_max: float, image_size: int) -> int:
    """Odd kernel covering +-3 sigma, shrunk if needed so reflect padding fits inside the image."""
    size = 2 * math.ceil(3 * sigma_max) + 1
    largest = image_size if image_size % 2 == 1 else image_size - 1
    return max(1, min(size, largest))


def gaussian_kernels(sigma: np.ndarray, kernel_size: int) -> np.ndarray:
    """Normalised 1-D Gaussian taps of an odd ``kernel_size``, one row per sigma: ``float64
    [len(sigma), kernel_size]`` (kornia's ``get_gaussian_kernel1d``, computed in float64)."""
    if kernel_size % 2 != 1:
        raise ValueError(f"the blur kernel size must be odd, got {kernel_size}")
    offsets = np.arange(kernel_size, dtype=np.float64) - kernel_size // 2
    taps = np.exp(-(offsets**2) / (2.0 * np.asarray(sigma, dtype=np.float64)[:, None] ** 2))
    return taps / taps.sum(axis=1, keepdims=True)



def gaussian_blur_passes(selected: HostArray, sigma: HostArray, kernel_size: int, bands: int) -> list[Pass]:
    """Gaussian blur of the selected rows, each with its own sigma (host ``[N]``), reflect borders.

    The same separable filter as kornia's ``gaussian_blur2d`` (a horizontal then a vertical pass,
    each on a reflect-padded input), with the taps computed on the host. Ours because kornia
    builds the per-row taps on the device from a sigma tensor: about 35 small ops (kernel launches
    on a GPU) per call, against 4 here (``geodino bench host``, issue 14).
    """
    selected = np.asarray(selected)
    if kernel_size < 3 or not selected.any():
        return []
    half = kernel_size // 2
    # Per row, its taps once per band (one filter per (row, band)); rows not blurred get none.
    taps = np.zeros((len(selected), bands * kernel_size))
    rows = np.flatnonzero(selected)
    taps[rows] = np.tile(gaussian_kernels(np.asarray(sigma)[rows], kernel_size), bands)

    def op(sub: torch.Tensor, row_taps: torch.Tensor) -> torch.Tensor:
        k, c, height, width = sub.shape
        # Depthwise convolutions over the [1, k c, H, W] stack.
        filters = row_taps.reshape(k * c, kernel_size)
        planes = sub.reshape(1, k * c, height, width)
        planes = F.conv2d(F.pad(planes, (half, half, 0, 0), mode="reflect"), filters.view(k * c, 1, 1, -1),
                          groups=k * c)
        planes = F.conv2d(F.pad(planes, (0, 0, half, half), mode="reflect"), filters.view(k * c, 1, -1, 1),
                          groups=k * c)
        return planes.view(k, c, height, width)

    return [Pass(selected, op, taps)]



def solarize_passes(selected: HostArray) -> list[Pass]:
    """Reflect the upper half of unit space: ``u >= 0.5 -> 1 - u`` (PIL's threshold 128 of 255)."""
    # min(u, 1 - u) is 1 - u exactly where u >= 0.5 (1 - u is exact there): one launch fewer than a where.
    return [Pass(selected, lambda sub, _: torch.minimum(sub, 1.0 - sub))]
