"""The multi-crop module end to end (geodino/augment/multicrop.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from geodino.augment import MultiCropAugment, Views

RGB_MEAN, RGB_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
MS_MEAN = [1500.0] * 12 + [-19.0, -12.5]
MS_STD = [900.0] * 12 + [5.4, 5.0]
MODALITIES = {"s2": list(range(12)), "s1": [12, 13]}
ALL_OFF: dict[str, Any] = dict(
    flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=(0.0, 0.0, 0.0), solarize_p=(0.0, 0.0, 0.0)
)
WHOLE: dict[str, Any] = dict(global_scale=(1.0, 1.0), local_scale=(1.0, 1.0))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _multispectral(b: int, size: int, seed: int = 0) -> torch.Tensor:
    g = _gen(seed)
    reflectance = torch.rand(b, 12, size, size, generator=g) * 6000
    sar_db = -35 + torch.rand(b, 2, size, size, generator=g) * 35  # includes values far below mean - 2 std
    return torch.cat([reflectance, sar_db], dim=1)


def _stats(mean: list[float], std: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)


def _ms(**kw: Any) -> MultiCropAugment:
    args: dict[str, Any] = dict(in_chans=14, mean=MS_MEAN, std=MS_STD, global_size=16, local_size=8, n_local=3)
    args.update(kw)
    return MultiCropAugment(**args)


def _rgb(**kw: Any) -> MultiCropAugment:
    args: dict[str, Any] = dict(in_chans=3, mean=RGB_MEAN, std=RGB_STD, global_size=16, local_size=8, n_local=3)
    args.update(kw)
    return MultiCropAugment(**args)


# ------------------------------------------------------------------ shapes, determinism, slicing


@pytest.mark.parametrize("chans", [3, 14])
def test_shapes_dtype_device(chans: int) -> None:
    aug = _rgb() if chans == 3 else _ms()
    assert aug.mode == ("rgb" if chans == 3 else "multispectral")
    images = torch.rand(5, 3, 24, 20) if chans == 3 else _multispectral(5, 24)
    views = aug(images, 0)
    assert isinstance(views, Views) and len(views.teacher) == 2 and len(views.student) == 5
    for t in views.teacher + views.student[:2]:
        assert t.shape == (5, chans, 16, 16)
    for t in views.student[2:]:
        assert t.shape == (5, chans, 8, 8)
    for t in views.student:
        assert t.dtype == torch.float32 and t.device == images.device and torch.isfinite(t).all()
    assert views.student[0] is views.teacher[0] and views.student[1] is views.teacher[1]


def test_same_seed_same_views_and_different_seed_different_views() -> None:
    aug = _ms(modalities=MODALITIES, modality_drop_p=0.5)
    images = _multispectral(4, 24)
    a, b, c = aug(images, 1), aug(images, 1), aug(images, 2)
    assert all(torch.equal(x, y) for x, y in zip(a.student, b.student))
    assert not any(torch.equal(x, y) for x, y in zip(a.student, c.student))


@pytest.mark.parametrize("chans,drop_on", [(3, "all"), (14, "all"), (14, "student")])
def test_slices_of_a_global_batch_reproduce_the_full_batch(chans: int, drop_on: str) -> None:
    if chans == 3:
        aug, images = _rgb(), torch.rand(8, 3, 24, 24)
    else:
        aug = _ms(modalities=MODALITIES, modality_drop_p=0.5, modality_drop_on=drop_on)
        images = _multispectral(8, 24)
    full = aug(images, 5)
    halves = [aug(images[o : o + 4], 5, offset=o) for o in (0, 4)]
    for kind in ("teacher", "student"):
        for v, whole in enumerate(getattr(full, kind)):
            joined = torch.cat([getattr(h, kind)[v] for h in halves])
            assert torch.equal(joined, whole), f"{kind} view {v}"


def test_argument_checks() -> None:
    aug = _ms()
    with pytest.raises(ValueError):
        aug(torch.rand(2, 3, 16, 16), 0)
    with pytest.raises(ValueError):
        aug(_multispectral(4, 16), 0, offset=-1)
    with pytest.raises(ValueError):
        MultiCropAugment(in_chans=4, mean=[0] * 4, std=[1] * 4, mode="rgb")
    with pytest.raises(ValueError):
        _ms(modality_drop_p=0.5)  # no modalities to drop


# ------------------------------------------------------------------ rgb recipe


def test_rgb_flip_only_gives_flipped_whole_image() -> None:
    images = torch.rand(3, 3, 16, 16)
    mean, std = _stats(RGB_MEAN, RGB_STD)
    for flip_p, expected in [(1.0, images.flip(-1)), (0.0, images)]:
        views = _rgb(**{**ALL_OFF, **WHOLE, "flip_p": flip_p})(images, 0)
        for v in views.teacher:
            torch.testing.assert_close(v, (expected - mean) / std, atol=1e-4, rtol=0)


def test_rgb_grayscale_forced_gives_equal_channels_of_luma() -> None:
    images = torch.rand(3, 3, 16, 16)
    mean, std = _stats(RGB_MEAN, RGB_STD)
    views = _rgb(**{**ALL_OFF, **WHOLE, "grayscale_p": 1.0})(images, 0)
    luma = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2])[:, None].expand_as(images)
    for v in views.student[:2]:
        raw = v * std + mean
        torch.testing.assert_close(raw[:, 0], raw[:, 1], atol=1e-5, rtol=0)
        torch.testing.assert_close(raw, luma, atol=1e-4, rtol=0)


def test_rgb_solarize_forced_inverts_above_half() -> None:
    images = torch.rand(3, 3, 16, 16)
    mean, std = _stats(RGB_MEAN, RGB_STD)
    views = _rgb(**{**ALL_OFF, **WHOLE, "solarize_p": (1.0, 1.0, 1.0)})(images, 0)
    expected = torch.where(images >= 0.5, 1 - images, images)
    # Pixels right at the threshold may land on either side after resampling; ignore them.
    away = (images - 0.5).abs() > 1e-4
    for v in views.teacher:
        assert torch.allclose((v * std + mean)[away], expected[away], atol=1e-4)


def test_rgb_brightness_factor_per_sample_in_range() -> None:
    images = 0.1 + 0.5 * torch.rand(64, 3, 16, 16)  # x 1.4 stays below 1: no clamping
    mean, std = _stats(RGB_MEAN, RGB_STD)
    aug = _rgb(**{**ALL_OFF, **WHOLE, "jitter_p": 1.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0})
    views = aug(images, 0)
    raw = views.teacher[0] * std + mean
    ratio = raw / images
    per_sample = ratio.mean(dim=(1, 2, 3))
    torch.testing.assert_close(ratio, per_sample.view(-1, 1, 1, 1).expand_as(ratio), atol=1e-4, rtol=0)
    assert per_sample.min() >= 0.6 - 1e-4 and per_sample.max() <= 1.4 + 1e-4
    assert per_sample.std() > 0.15  # uniform on [0.6, 1.4]: std 0.23


def test_rgb_full_recipe_runs_and_differs_between_views() -> None:
    views = _rgb()(torch.rand(4, 3, 32, 32), 0)
    assert not torch.equal(views.teacher[0], views.teacher[1])


# ------------------------------------------------------------------ multispectral recipe


def test_multispectral_standardisation_when_ops_are_off() -> None:
    images = _multispectral(3, 16)
    mean, std = _stats(MS_MEAN, MS_STD)
    views = _ms(**{**ALL_OFF, **WHOLE})(images, 0)
    z = (images - mean) / std
    assert z[:, 12:].min() < -2.5  # SAR far below mean - 2 std survives: nothing is clipped
    for v in views.teacher:
        torch.testing.assert_close(v, z, atol=1e-4, rtol=0)


def test_multispectral_grayscale_is_band_mean() -> None:
    images = _multispectral(3, 16)
    mean, std = _stats(MS_MEAN, MS_STD)
    views = _ms(**{**ALL_OFF, **WHOLE, "grayscale_p": 1.0})(images, 0)
    z = (images - mean) / std
    expected = z.mean(dim=1, keepdim=True).expand_as(z)
    torch.testing.assert_close(views.teacher[0], expected, atol=1e-4, rtol=0)


def test_multispectral_brightness_one_factor_for_all_bands() -> None:
    images = _multispectral(32, 16)
    mean, std = _stats(MS_MEAN, MS_STD)
    aug = _ms(**{**ALL_OFF, **WHOLE, "jitter_p": 1.0, "contrast": 0.0})
    out = aug(images, 0).teacher[0]
    u_in = ((images - mean) / std + 2) / 4
    u_out = (out + 2) / 4
    # Unit-space ratio: one factor per sample, shared by every band and pixel.
    ratio = u_out / u_in
    keep = u_in.abs() > 0.05
    per_sample = (u_out * u_in).sum(dim=(1, 2, 3)) / (u_in * u_in).sum(dim=(1, 2, 3))
    expected = per_sample.view(-1, 1, 1, 1).expand_as(ratio)
    assert torch.allclose(ratio[keep], expected[keep], atol=1e-3)
    assert per_sample.min() >= 0.6 - 1e-4 and per_sample.max() <= 1.4 + 1e-4


def test_multispectral_contrast_one_factor_toward_global_mean() -> None:
    images = _multispectral(32, 16)
    mean, std = _stats(MS_MEAN, MS_STD)
    aug = _ms(**{**ALL_OFF, **WHOLE, "jitter_p": 1.0, "brightness": 0.0})
    out = aug(images, 0).teacher[0]
    z = (images - mean) / std
    centred_in = z - z.mean(dim=(1, 2, 3), keepdim=True)
    centred_out = out - out.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), z.mean(dim=(1, 2, 3)), atol=1e-4, rtol=0)
    c = (centred_out * centred_in).sum(dim=(1, 2, 3)) / (centred_in**2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(centred_out, c.view(-1, 1, 1, 1) * centred_in, atol=1e-3, rtol=0)
    assert c.min() >= 0.6 - 1e-4 and c.max() <= 1.4 + 1e-4


def test_multispectral_solarize_reflects_upper_half_of_unit_space() -> None:
    images = _multispectral(3, 16)
    mean, std = _stats(MS_MEAN, MS_STD)
    views = _ms(**{**ALL_OFF, **WHOLE, "solarize_p": (1.0, 1.0, 1.0)})(images, 0)
    u = ((images - mean) / std + 2) / 4
    expected_u = torch.where(u >= 0.5, 1 - u, u)
    away = (u - 0.5).abs() > 1e-4
    got_u = (views.teacher[1] + 2) / 4
    assert torch.allclose(got_u[away], expected_u[away], atol=1e-4)


def test_multispectral_blur_and_defaults_run() -> None:
    views = _ms(n_local=2)(_multispectral(4, 24), 0)
    assert all(torch.isfinite(v).all() for v in views.student)


# ------------------------------------------------------------------ modality masking


def _dropped(view: torch.Tensor, fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    s2 = (view[:, :12] == fill).flatten(1).all(dim=1)
    s1 = (view[:, 12:] == fill).flatten(1).all(dim=1)
    return s2, s1


def test_modality_drop_frequencies_over_many_crops() -> None:
    fill = 7.5
    aug = _ms(global_size=4, local_size=4, n_local=8, modalities=MODALITIES, modality_drop_p=0.5, modality_fill=fill)
    views = aug(_multispectral(256, 8), 11)
    s2, s1 = map(torch.cat, zip(*[_dropped(v, fill) for v in views.student]))
    n = s2.numel()
    assert n == 256 * 10 and not (s2 & s1).any()
    for observed, p in [(~s2 & ~s1, 0.5), (s2, 0.25), (s1, 0.25)]:
        freq = observed.double().mean().item()
        assert abs(freq - p) < 5 * math.sqrt(p * (1 - p) / n), (freq, p)


def test_modality_drop_all_masks_teacher_globals_too() -> None:
    aug = _ms(modalities=MODALITIES, modality_drop_p=1.0, modality_fill=-9.0)
    views = aug(_multispectral(16, 24), 0)
    assert views.student[0] is views.teacher[0]
    s2, s1 = _dropped(views.teacher[0], -9.0)
    assert (s2 ^ s1).all()


def test_modality_drop_student_only_leaves_teacher_whole() -> None:
    images = _multispectral(16, 24)
    plain = _ms()(images, 3)
    aug = _ms(modalities=MODALITIES, modality_drop_p=1.0, modality_fill=-9.0, modality_drop_on="student")
    views = aug(images, 3)
    # Modality draws come after the view parameters: the teacher is exactly the unmasked run's.
    for t, ref in zip(views.teacher, plain.teacher):
        assert torch.equal(t, ref)
    for v in range(2):
        assert views.student[v] is not views.teacher[v]
        s2, s1 = _dropped(views.student[v], -9.0)
        assert (s2 ^ s1).all()
        # Channels that were not dropped are the teacher's.
        same = views.student[v] == views.teacher[v]
        assert same[~s2][:, :12].all() and same[~s1][:, 12:].all()


def test_from_card_takes_bands_statistics_and_modalities() -> None:
    from geodino.data.card import DatasetCard

    card = DatasetCard.load("bigearthnet-v1")
    card = card.with_statistics([1000.0] * card.num_bands, [500.0] * card.num_bands)
    aug = MultiCropAugment.from_card(card, modality_drop_p=0.5, global_size=16, local_size=8, n_local=1)
    assert aug.in_chans == card.num_bands and aug.mode == "multispectral"
    assert aug.modalities == card.modalities
    views = aug(torch.rand(2, card.num_bands, 20, 20) * 3000, 0)
    assert views.student[2].shape == (2, card.num_bands, 8, 8)


def test_physical_band_ops_from_card_gain_on_raw_values_shift_in_db_grayscale_per_sensor() -> None:
    from geodino.data.card import DatasetCard

    card = DatasetCard.load("bigearthnet-v1").with_statistics(MS_MEAN, MS_STD)
    assert [b.unit for b in card.bands][-2:] == ["dB", "dB"]
    images = _multispectral(16, 16).double()
    mean, std = _stats(MS_MEAN, MS_STD)
    mean, std = mean.double(), std.double()
    aug = MultiCropAugment.from_card(card, band_ops="physical", global_size=16, local_size=8, n_local=1,
                                     **{**ALL_OFF, **WHOLE, "jitter_p": 1.0, "contrast": 0.0})
    raw_out = aug(images, 0).teacher[0] * std + mean
    # One gain per sample: reflectances multiplied by it, backscatter shifted by 10 log10 of it.
    gain = raw_out[:, :12].sum(dim=(1, 2, 3)) / images[:, :12].sum(dim=(1, 2, 3))
    torch.testing.assert_close(raw_out[:, :12], gain.view(-1, 1, 1, 1) * images[:, :12], atol=1e-2, rtol=1e-5)
    shift = (10 * torch.log10(gain)).view(-1, 1, 1, 1)
    torch.testing.assert_close(raw_out[:, 12:], images[:, 12:] + shift, atol=1e-4, rtol=0)
    assert gain.min() >= 0.6 - 1e-6 and gain.max() <= 1.4 + 1e-6 and gain.std() > 0.05

    gray = MultiCropAugment.from_card(card, band_ops="physical", global_size=16, local_size=8, n_local=1,
                                      **{**ALL_OFF, **WHOLE, "grayscale_p": 1.0})
    z = (images - mean) / std
    out = gray(images, 0).teacher[0].double()
    torch.testing.assert_close(out[:, :12], z[:, :12].mean(1, keepdim=True).expand(-1, 12, -1, -1),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(out[:, 12:], z[:, 12:].mean(1, keepdim=True).expand(-1, 2, -1, -1),
                               atol=1e-4, rtol=0)


def test_band_ops_checks() -> None:
    with pytest.raises(ValueError, match="band_ops"):
        _ms(band_ops="per_band")
    with pytest.raises(ValueError, match="multispectral"):
        _rgb(band_ops="physical")
    with pytest.raises(ValueError, match="units"):
        _ms(band_ops="physical", units=["dB"])


@pytest.mark.parametrize("mode", ["rgb", "multispectral", "physical", "modality drop"])
def test_each_view_group_copies_its_parameters_to_the_device_once(mode):
    """On a GPU every host-to-device copy is a transfer the host queues. The crop coordinates and
    then every intensity pass's rows and parameters travel in one copy per view group (they took
    one or two per pass: 41 a call for RGB, 13 for multispectral crops). The meta device stands in
    for a GPU: it computes nothing, but a copy from the host to it is an op."""
    from geodino.bench.host import HostToDeviceCopies
    from geodino.data.synthetic import synthetic_card

    if mode == "rgb":
        aug = MultiCropAugment(3, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], mode="rgb", global_size=32,
                               local_size=16, n_local=8)
        raw = torch.rand(64, 3, 32, 32)
    else:
        card = synthetic_card()
        extra = {"physical": {"band_ops": "physical"}, "modality drop": {"modality_drop_p": 0.5}}.get(mode, {})
        aug = MultiCropAugment.from_card(card, global_size=32, local_size=16, n_local=8, **extra)
        raw = torch.rand(64, card.num_bands, 32, 32) * 2000
    raw = raw.to("meta")
    aug(raw, 0)  # the first call copies the band statistics once
    with HostToDeviceCopies() as count:
        views = aug(raw, 1)
    assert len(views.student) == 10
    drops = 2 if mode == "modality drop" else 0  # the drop masks: one per view group
    assert count.copies == 4 + drops, count.copies  # per view group: crop coordinates, then the passes
