"""Per-sample intensity ops (geodino/augment/intensity.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import torch
from kornia.enhance import (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    adjust_hue,
    adjust_saturation_with_gray_subtraction,
)

from geodino.augment import intensity


def test_rgb_jitter_follows_each_rows_own_order() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    factors = torch.tensor([[1.4, 0.6, 1.0, 0.0], [1.4, 0.6, 1.0, 0.0]], dtype=torch.float64)
    # Row 0: brightness then contrast; row 1: contrast then brightness.
    order = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]])
    out = intensity.run_passes(x.clone(), intensity.rgb_color_jitter_passes(torch.tensor([True, True]), factors, order))
    b = torch.tensor([1.4])
    c = torch.tensor([0.6])
    first = adjust_contrast_with_mean_subtraction(adjust_brightness_accumulative(x[:1], b), c)
    second = adjust_brightness_accumulative(adjust_contrast_with_mean_subtraction(x[1:], c), b)
    torch.testing.assert_close(out[:1], first)
    torch.testing.assert_close(out[1:], second)
    # Clamping after brightness makes the order matter on these images.
    other = adjust_brightness_accumulative(adjust_contrast_with_mean_subtraction(x[:1], c), b)
    assert not torch.allclose(first, other)


def test_rgb_jitter_in_8_passes_equals_kornias_ops_one_row_at_a_time() -> None:
    # Every row its own order, factors and identity factors (skipped ops) mixed in: the fused
    # blend passes and our hue rotation must give kornia's per-op results, within float32
    # rounding (the blends' coefficients are worked out in float64 on the host).
    g = torch.Generator().manual_seed(1)
    n = 24
    x = torch.rand(n, 3, 8, 8, generator=g)
    factors = torch.stack([0.6 + 0.8 * torch.rand(n, generator=g, dtype=torch.float64),
                           0.6 + 0.8 * torch.rand(n, generator=g, dtype=torch.float64),
                           0.8 + 0.4 * torch.rand(n, generator=g, dtype=torch.float64),
                           -0.1 + 0.2 * torch.rand(n, generator=g, dtype=torch.float64)], 1)
    factors[::5, 1] = 1.0  # some rows skip contrast
    factors[::7, 3] = 0.0  # some skip hue
    order = torch.argsort(torch.rand(n, 4, generator=g), dim=1)
    jitter = torch.rand(n, generator=g) < 0.8
    out = intensity.run_passes(x.clone(), intensity.rgb_color_jitter_passes(jitter, factors, order))
    ops = [adjust_brightness_accumulative, adjust_contrast_with_mean_subtraction,
           adjust_saturation_with_gray_subtraction, lambda img, f: adjust_hue(img, f * (2 * math.pi))]
    identity = (1.0, 1.0, 1.0, 0.0)
    for i in range(n):
        expected = x[i : i + 1]
        for op in order[i].tolist() if jitter[i] else []:
            if factors[i, op] != identity[op]:
                expected = ops[op](expected, factors[i, op : op + 1].float())
        torch.testing.assert_close(out[i : i + 1], expected, atol=2e-6, rtol=0, msg=f"row {i}")


def test_hue_rotation_equals_torchvision_and_kornia() -> None:
    # Our hue rotation (14 launches, where kornia's RGB -> HSV -> RGB round trip takes ~76) against
    # both libraries' per-image adjust_hue, over random pixels, gray ones (no hue), pure and
    # saturated colours, ties between the largest channels, and shifts up to half a turn each way.
    from torchvision.transforms.v2.functional import adjust_hue as tv_adjust_hue

    g = torch.Generator().manual_seed(3)
    x = torch.rand(9, 3, 6, 6, generator=g)
    x[:, :, 0, 0] = 0.4  # gray
    x[:, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # pure red
    x[:, :, 0, 2] = torch.tensor([0.7, 0.7, 0.2])  # R and G tie for the largest
    x[:, :, 0, 3] = torch.tensor([0.0, 0.0, 0.0])
    x[:, :, 0, 4] = torch.tensor([0.2, 0.9, 0.9])  # G and B tie
    shifts = torch.tensor([-0.5, -0.31, -0.1, -0.01, 0.0, 0.02, 0.17, 1 / 3, 0.5], dtype=torch.float64)
    ramps = torch.from_numpy(intensity._HUE_RAMPS)[None] + 6 * shifts[:, None]
    out = intensity._hue(x.clone(), ramps.float())
    for i, shift in enumerate(shifts.tolist()):
        torch.testing.assert_close(out[i], tv_adjust_hue(x[i], shift), atol=2e-6, rtol=0)
        torch.testing.assert_close(out[i : i + 1], adjust_hue(x[i : i + 1], torch.tensor([shift * 2 * math.pi])),
                                   atol=2e-6, rtol=0)
    assert torch.equal(out[:, :, 0, 0], x[:, :, 0, 0])  # gray stays gray, exactly
    assert out.min() >= 0 and out.max() <= 1
    # A third of a turn takes red to green.
    torch.testing.assert_close(out[7, :, 0, 1], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6, rtol=0)


def test_rgb_jitter_skips_rows_not_selected_and_stays_in_unit_range() -> None:
    x = torch.rand(4, 3, 8, 8)
    factors = torch.tensor([[1.4, 1.4, 1.2, 0.1]] * 4, dtype=torch.float64)
    order = torch.arange(4).expand(4, 4)
    out = intensity.run_passes(x.clone(), intensity.rgb_color_jitter_passes(torch.tensor([True, False, True, False]), factors, order))
    assert torch.equal(out[1], x[1]) and torch.equal(out[3], x[3])
    assert not torch.allclose(out[0], x[0])
    assert out.min() >= 0 and out.max() <= 1


def test_multispectral_jitter_one_factor_for_all_bands() -> None:
    u = torch.rand(2, 14, 6, 6) * 3 - 1  # unit space is not clipped: values outside [0, 1] are fine
    factors = torch.tensor([[1.3, 0.7, 1.0, 0.0], [0.8, 1.2, 1.0, 0.0]], dtype=torch.float64)
    out = intensity.run_passes(u.clone(), intensity.multispectral_jitter_passes(torch.tensor([True, True]), factors))
    for i, (b, c) in enumerate([(1.3, 0.7), (0.8, 1.2)]):
        mean = u[i].mean()
        torch.testing.assert_close(out[i], b * (c * u[i] + (1 - c) * mean))


@pytest.mark.parametrize("band_ops", ["joint", "physical"])
def test_jitter_runs_over_every_row_in_place_and_leaves_rows_not_jittered_exactly(band_ops: str) -> None:
    # The jitters run over all rows in one pass (3 launches), the rows not jittered with factors
    # that must leave their values exactly, huge and tiny values included (a negative zero may
    # come back as +0, the same value), and whatever their mean: non-finite values, or finite
    # ones whose float32 sum overflows (inf * a weight of 0 would be NaN over the whole row).
    u = torch.randn(4, 5, 6, 6) * 3
    u[1, 0, 0, :3] = torch.tensor([-0.0, 3e38, 1e-40])
    u[3, 0, 0, :4] = torch.tensor([3e38, 3e38, 3e38, -1.0])
    u[3, 1, 1, :3] = torch.tensor([float("inf"), float("-inf"), float("nan")])
    factors = torch.tensor([[1.3, 0.7, 1.0, 0.0], [0.6, 1.4, 1.0, 0.0], [0.9, 1.1, 1.0, 0.0], [1.2, 0.8, 1.0, 0.0]],
                           dtype=torch.float64)
    jitter = torch.tensor([True, False, True, False])
    is_db = torch.tensor([False, False, False, True, True])
    offset, step = torch.linspace(-0.5, 0.5, 5, dtype=torch.float64), torch.full((5,), 0.4, dtype=torch.float64)
    passes = (intensity.multispectral_jitter_passes(jitter, factors) if band_ops == "joint" else
              intensity.physical_jitter_passes(jitter, factors, offset, step, is_db))
    x = u.clone()
    out = intensity.run_passes(x, passes)
    assert out.data_ptr() == x.data_ptr()
    for i in (1, 3):
        torch.testing.assert_close(out[i], u[i], rtol=0, atol=0, equal_nan=True)
    for i in (0, 2):  # the jittered rows as the ops are defined (module docstring), in float64
        b, c = factors[i, 0].item(), factors[i, 1].item()
        v = u[i].double()
        if band_ops == "joint":
            want = b * (c * v + (1 - c) * v.mean())
        else:
            blended = c * v + (1 - c) * v.mean(dim=(1, 2), keepdim=True)
            lin = (~is_db).double()[:, None, None]
            want = (blended * (1 + lin * (b - 1)) + lin * (b - 1) * offset[:, None, None]
                    + (1 - lin) * math.log10(b) * step[:, None, None])
        torch.testing.assert_close(out[i].double(), want, atol=2e-6, rtol=1e-6)
    assert intensity.multispectral_jitter_passes(torch.zeros(4, dtype=torch.bool), factors) == []


def test_solarize_is_exactly_one_minus_u_from_one_half_up() -> None:
    u = torch.tensor([[-2.0, 0.0, 0.25, 0.4999999, 0.5, 0.5000001, 0.75, 1.0, 3.0, float("nan")]]).view(1, 1, 1, -1)
    out = intensity.run_passes(u.clone(), intensity.solarize_passes(torch.tensor([True])))
    torch.testing.assert_close(out, torch.where(u >= 0.5, 1.0 - u, u), rtol=0, atol=0, equal_nan=True)


def test_blur_keeps_constant_images_and_unselected_rows() -> None:
    x = torch.rand(3, 2, 16, 16)
    x[0] = 0.25
    sigma = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    out = intensity.run_passes(x.clone(), intensity.gaussian_blur_passes(torch.tensor([True, True, False]), sigma, 13, x.shape[1]))
    torch.testing.assert_close(out[0], x[0])
    assert torch.equal(out[2], x[2])
    assert out[1].std() < x[1].std()  # smoothing lowers the pixel-to-pixel variation
    assert intensity.blur_kernel_size(2.0, 224) == 13
    assert intensity.blur_kernel_size(2.0, 8) == 7


def test_grayscales_and_solarize() -> None:
    x = torch.rand(2, 3, 4, 4)
    g = intensity.run_passes(x.clone(), intensity.rgb_grayscale_passes(torch.tensor([True, False])))
    luma = 0.299 * x[0, 0] + 0.587 * x[0, 1] + 0.114 * x[0, 2]
    for ch in range(3):
        torch.testing.assert_close(g[0, ch], luma)
    assert torch.equal(g[1], x[1])
    m = torch.randn(1, 5, 4, 4)
    torch.testing.assert_close(
        intensity.run_passes(m.clone(), intensity.band_mean_grayscale_passes(torch.tensor([True]))), m.mean(1, keepdim=True).expand_as(m)
    )
    s = intensity.run_passes(x.clone(), intensity.solarize_passes(torch.tensor([True, False])))
    torch.testing.assert_close(s[0], torch.where(x[0] >= 0.5, 1 - x[0], x[0]))
    assert torch.equal(s[1], x[1])


def test_physical_jitter_is_a_gain_in_raw_units_and_a_shift_in_db() -> None:
    # Two reflectance bands and one dB band, with their raw statistics.
    mean = torch.tensor([700.0, 2000.0, -12.0], dtype=torch.float64)
    std = torch.tensor([500.0, 1800.0, 5.0], dtype=torch.float64)
    is_db = torch.tensor([False, False, True])
    raw = torch.stack([torch.rand(4, 4) * 3000, torch.rand(4, 4) * 5000, torch.rand(4, 4) * 20 - 25])[None].double()
    unit = (raw - (mean - 2 * std)[:, None, None]) / (4 * std)[:, None, None]
    offset, step = (mean - 2 * std) / (4 * std), 10.0 / (4 * std)
    factors = torch.tensor([[1.3, 1.0, 1.0, 0.0]], dtype=torch.float64)  # brightness 1.3, no contrast
    out = intensity.run_passes(unit.clone(), intensity.physical_jitter_passes(torch.tensor([True]), factors, offset, step, is_db))
    back = out * (4 * std)[:, None, None] + (mean - 2 * std)[:, None, None]
    torch.testing.assert_close(back[0, :2], 1.3 * raw[0, :2])  # illumination: x -> 1.3 x
    torch.testing.assert_close(back[0, 2], raw[0, 2] + 10 * math.log10(1.3))  # +1.14 dB
    # The ratio between reflectance bands (the spectrum's shape) survives; the joint op's does not.
    joint = intensity.run_passes(unit.clone(), intensity.multispectral_jitter_passes(torch.tensor([True]), factors))
    joint_back = joint * (4 * std)[:, None, None] + (mean - 2 * std)[:, None, None]
    torch.testing.assert_close(back[0, 0] / back[0, 1], raw[0, 0] / raw[0, 1])
    assert not torch.allclose(joint_back[0, 0] / joint_back[0, 1], raw[0, 0] / raw[0, 1])


def test_physical_contrast_blends_each_band_toward_its_own_mean() -> None:
    u = torch.rand(1, 3, 5, 5, dtype=torch.float64) + torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)[:, None, None]
    factors = torch.tensor([[1.0, 0.5, 1.0, 0.0]], dtype=torch.float64)
    zeros = torch.zeros(3, dtype=torch.float64)
    out = intensity.run_passes(u.clone(), intensity.physical_jitter_passes(torch.tensor([True]), factors, zeros, zeros,
                                                                    torch.zeros(3, dtype=torch.bool)))
    band_mean = u.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(out, 0.5 * u + 0.5 * band_mean)
    torch.testing.assert_close(out.mean(dim=(2, 3)), u.mean(dim=(2, 3)))  # every band keeps its level


def test_modality_grayscale_never_mixes_sensors() -> None:
    x = torch.randn(2, 5, 3, 3)
    out = intensity.run_passes(x.clone(), intensity.modality_grayscale_passes(torch.tensor([True, False]), [[0, 1, 2], [3, 4]]))
    torch.testing.assert_close(out[0, :3], x[0, :3].mean(0, keepdim=True).expand(3, 3, 3))
    torch.testing.assert_close(out[0, 3:], x[0, 3:].mean(0, keepdim=True).expand(2, 3, 3))
    assert torch.equal(out[1], x[1])


def test_blur_is_kornias_gaussian_blur_with_taps_built_on_the_host() -> None:
    """Ours only because kornia builds per-row taps on the device (dozens of small ops): the result
    must stay kornia's separable reflect-padded Gaussian, for each sigma and kernel size used."""
    from kornia.filters import gaussian_blur2d

    torch.manual_seed(0)
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.7, 2.0], dtype=torch.float64)
    for kernel, size in [(13, 32), (13, 96), (7, 8), (3, 5)]:
        x = torch.rand(5, 3, size, size)
        out = intensity.run_passes(x.clone(), intensity.gaussian_blur_passes(torch.ones(5, dtype=torch.bool), sigma, kernel, x.shape[1]))
        want = gaussian_blur2d(x, (kernel, kernel), sigma.float()[:, None].expand(-1, 2), border_type="reflect")
        torch.testing.assert_close(out, want, atol=1e-6, rtol=0)
    taps = intensity.gaussian_kernels(np.array([1.0]), 5)
    assert np.allclose(taps.sum(), 1.0) and np.allclose(taps, taps[:, ::-1])  # normalised and symmetric
    with pytest.raises(ValueError, match="odd"):
        intensity.gaussian_kernels(np.array([1.0]), 4)
