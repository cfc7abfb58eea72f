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
from kornia.color import rgb_to_grayscale
from kornia.enhance import adjust_hue

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
    toward a different reference: 0, the mean gray level, the gray image (kornia's formulas, so
    the results are theirs bit for bit). So at each of the four positions of the order, every row
    whose op there is one of those three goes through one pass with its own factor and reference,
    and the rows whose op is hue through a second: 8 passes instead of one per op and position (16).
    """
    jitter, factors, order = np.asarray(jitter), np.asarray(factors), np.asarray(order)
    # A factor equal to identity is a no-op (torchvision skips an op whose strength is 0).
    active = factors != np.array([1.0, 1.0, 1.0, 0.0])
    hue_op = JITTER_OPS.index("hue")
    every = np.arange(len(order))
    passes = []
    for step in range(len(JITTER_OPS)):
        op_at = order[:, step]
        takes = jitter & active[every, op_at]
        factor_at = factors[every, op_at]
        # Per row: the blend's factor and which reference (0 black, 1 mean gray, 2 gray image).
        blend_table = np.stack([factor_at, op_at == 1, op_at == 2], axis=1)
        passes.append(Pass(takes & (op_at != hue_op), _blend, blend_table))
        passes.append(Pass(takes & (op_at == hue_op), _hue, factor_at[:, None]))
    return passes


def _blend(sub: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    f, to_mean, to_gray = table.view(len(sub), 3, 1, 1, 1).unbind(1)
    gray = rgb_to_grayscale(sub)
    ref = torch.where(to_gray > 0, gray, torch.where(to_mean > 0, gray.mean((-2, -1), keepdim=True), 0.0))
    return (sub * f + ref * (1 - f)).clamp_(0.0, 1.0)


def _hue(sub: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    # kornia shifts hue in radians, torchvision in turns; hsv round trips stay in [0, 1].
    return adjust_hue(sub, shift.view(-1) * (2 * math.pi))



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
        level = x.mean(dim=(1, 2, 3), keepdim=True) * mean_weight
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
        level = torch.addcmul(bias, x.mean(dim=(2, 3), keepdim=True), mean_weight)
        return torch.addcmul(level, x, gain, out=x)

    return [Pass(np.ones_like(jitter), op, np.concatenate([scale * c, scale * (1 - c), shift], axis=1))]


# ---------------------------------------------------------------- grayscale, blur, solarize



def rgb_grayscale_passes(selected: HostArray) -> list[Pass]:
    """ITU-R 601 luma of the selected rows, copied to all three channels."""
    return [Pass(selected, lambda sub, _: rgb_to_grayscale(sub).expand_as(sub))]



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
