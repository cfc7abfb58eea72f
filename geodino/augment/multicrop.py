"""DINO multi-crop augmentation of a whole batch, on the batch's device, for any number of bands.

``MultiCropAugment`` turns a batch of raw images into the teacher's 2 global views and the
student's 2 global + ``n_local`` local views, following the DINO recipe (DESIGN §1): per sample
and per view a RandomResizedCrop (bicubic), flip, colour jitter, grayscale, Gaussian blur and
solarize, then per-band standardisation; optionally DINO-MM modality masking (DESIGN §2). See
:mod:`geodino.augment.intensity` for what the ops mean with more than three bands.

Randomness: every parameter is drawn on the CPU, in a fixed order (global views, local views,
modality drops), from counter-based numbers keyed by the step's key and the sample's index in the
global batch (:class:`~geodino.rng.RowRandom`). A process holding rows ``[offset, offset + B)``
draws those rows only, and one process on the whole batch and several processes on slices
produce the same crops, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from geodino.augment import intensity
from geodino.augment.crop import resized_crops
from geodino.augment.modality import apply_modality_drop, channel_table, check_modalities, sample_modality_drop
from geodino.augment.params import ViewParams, ViewRecipe, sample_group_params
from geodino.rng import RowRandom

MODES = ("rgb", "multispectral")
BAND_OPS = ("joint", "physical")


@dataclass
class Views:
    """The crops of one batch, standardised, each ``[B, C, size, size]``.

    ``teacher`` holds the 2 global views; ``student`` the 2 global views then the local ones.
    Unless modality masking hits student crops only, ``student[:2]`` are the teacher's tensors.
    """

    teacher: list[torch.Tensor]
    student: list[torch.Tensor]


class MultiCropAugment:
    """Batched DINO multi-crop augmentation; ``aug(images, key, offset)`` returns :class:`Views`.

    Args:
        in_chans: number of bands ``C``.
        mean, std: per-band statistics in raw units (what standardisation uses).
        mode: ``"rgb"`` (3 bands in [0, 1], the reference recipe), ``"multispectral"`` (any
            bands, band-agnostic ops in unit space), or ``"auto"`` (rgb iff ``C == 3``).
        global_size, global_scale, local_size, local_scale, n_local: the crops.
        modalities: channel groups, e.g. ``{"s2": range(12), "s1": [12, 13]}``.
        modality_drop_p: per-crop probability of hiding one modality (chosen uniformly).
        modality_fill: value of hidden channels, in standardised units (0 = the band mean).
        modality_drop_on: ``"all"`` crops (DINO-MM: the teacher sees masked globals too) or
            ``"student"`` crops only (the teacher's globals stay whole).
        band_ops: multispectral mode only: ``"joint"`` (DINO-MM: brightness, contrast and grayscale
            over all bands at once, in unit space) or ``"physical"`` (brightness as a gain on each
            band's physical quantity, contrast per band, grayscale per modality); see
            :mod:`geodino.augment.intensity`.
        units: per-band units (the card's); bands in ``"dB"`` take a brightness gain as a shift.
        flip_p, jitter_p, brightness, contrast, saturation, hue, grayscale_p: shared by all views
            (saturation and hue are ignored in multispectral mode).
        blur_p, solarize_p: ``(global 1, global 2, locals)`` probabilities.
        blur_sigma: range of the per-sample blur sigma, in output pixels.

    Example:
        >>> aug = MultiCropAugment(in_chans=3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
        ...                        global_size=32, local_size=16, n_local=2)
        >>> views = aug(torch.rand(4, 3, 48, 48), torch.Generator().manual_seed(0))
        >>> [tuple(v.shape) for v in views.student]
        [(4, 3, 32, 32), (4, 3, 32, 32), (4, 3, 16, 16), (4, 3, 16, 16)]
    """

    def __init__(
        self,
        in_chans: int,
        mean: Sequence[float],
        std: Sequence[float],
        mode: str = "auto",
        global_size: int = 224,
        global_scale: tuple[float, float] = (0.4, 1.0),
        local_size: int = 96,
        local_scale: tuple[float, float] = (0.05, 0.4),
        n_local: int = 8,
        modalities: Mapping[str, Sequence[int]] | None = None,
        modality_drop_p: float = 0.0,
        modality_fill: float = 0.0,
        modality_drop_on: str = "all",
        band_ops: str = "joint",
        units: Sequence[str] | None = None,
        flip_p: float = 0.5,
        jitter_p: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.2,
        hue: float = 0.1,
        grayscale_p: float = 0.2,
        blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5),
        solarize_p: tuple[float, float, float] = (0.0, 0.2, 0.0),
        blur_sigma: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(f"need {in_chans} mean and std values, got {len(mean)} and {len(std)}")
        if not all(s > 0 for s in std):
            raise ValueError(f"every std must be > 0, got {list(std)}")
        if mode == "auto":
            mode = "rgb" if in_chans == 3 else "multispectral"
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} or 'auto', got {mode!r}")
        if mode == "rgb" and in_chans != 3:
            raise ValueError(f"mode 'rgb' needs 3 channels, got {in_chans}; use 'multispectral'")
        if band_ops not in BAND_OPS:
            raise ValueError(f"band_ops must be one of {BAND_OPS}, got {band_ops!r}")
        if band_ops != "joint" and mode == "rgb":
            raise ValueError(f"band_ops {band_ops!r} is for multispectral mode; rgb mode uses the reference's "
                             "colour ops")
        if units is not None and len(units) != in_chans:
            raise ValueError(f"need {in_chans} units, got {len(units)}")
        if modality_drop_on not in ("all", "student"):
            raise ValueError(f"modality_drop_on must be 'all' or 'student', got {modality_drop_on!r}")
        if n_local < 0:
            raise ValueError(f"n_local must be >= 0, got {n_local}")
        if len(blur_p) != 3 or len(solarize_p) != 3:
            raise ValueError("blur_p and solarize_p take 3 values: (global 1, global 2, locals)")

        self.in_chans = in_chans
        self.mode = mode
        self.mean = torch.tensor([float(m) for m in mean], dtype=torch.float64)
        self.std = torch.tensor([float(s) for s in std], dtype=torch.float64)
        self.n_local = n_local
        self.modalities = dict(modalities) if modalities else None
        self.modality_table = channel_table(modalities, in_chans) if modalities else None
        if modality_drop_p > 0 and self.modality_table is None:
            raise ValueError("modality_drop_p > 0 needs `modalities`")
        if not 0.0 <= modality_drop_p <= 1.0:
            raise ValueError(f"modality_drop_p must be in [0, 1], got {modality_drop_p}")
        self.modality_drop_p = modality_drop_p
        self.modality_fill = float(modality_fill)
        self.modality_drop_on = modality_drop_on
        self.band_ops = band_ops
        self.is_db = torch.tensor([str(u).strip().lower() == "db" for u in (units or [""] * in_chans)])
        # Grayscale groups of the physical ops: each modality, and the bands of none as one more.
        groups = [list(c) for c in check_modalities(self.modalities, in_chans).values()] if self.modalities else []
        rest = sorted(set(range(in_chans)) - {c for g in groups for c in g})
        self.gray_groups = groups + ([rest] if rest else [])

        shared: dict[str, Any] = dict(
            flip_p=flip_p, jitter_p=jitter_p, brightness=brightness, contrast=contrast,
            saturation=saturation, hue=hue, grayscale_p=grayscale_p, blur_sigma=tuple(blur_sigma),
        )
        self.global_recipes = [
            ViewRecipe(
                size=global_size, scale=tuple(global_scale), blur_p=blur_p[i], solarize_p=solarize_p[i], **shared
            )
            for i in range(2)
        ]
        self.local_recipe = ViewRecipe(
            size=local_size, scale=tuple(local_scale), blur_p=blur_p[2], solarize_p=solarize_p[2], **shared
        )
        self.blur_sigma = tuple(blur_sigma)
        self._stats: dict[tuple, tuple[torch.Tensor, ...]] = {}

    @classmethod
    def from_card(cls, card: Any, **kwargs: Any) -> MultiCropAugment:
        """Build from a dataset card (its bands' count, mean, std and modalities); kwargs override."""
        if card.mean is None or card.std is None:
            raise ValueError(f"card {card.name!r} has no band statistics; compute them first")
        defaults: dict[str, Any] = dict(
            in_chans=card.num_bands, mean=card.mean, std=card.std, modalities=card.modalities,
            units=[b.unit for b in card.bands],
        )
        if len(card.modalities) < 2:
            defaults["modalities"] = None
        defaults.update(kwargs)
        return cls(**defaults)

    def __repr__(self) -> str:
        g, loc = self.global_recipes[0], self.local_recipe
        return (
            f"{type(self).__name__}(in_chans={self.in_chans}, mode={self.mode!r}, "
            f"global={g.size}px{g.scale} x2, local={loc.size}px{loc.scale} x{self.n_local}, "
            f"modality_drop_p={self.modality_drop_p} on {self.modality_drop_on!r}, band_ops={self.band_ops!r})"
        )

    # ------------------------------------------------------------------ the call

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, key: int, offset: int = 0) -> Views:
        """Augment ``images`` (``[B, C, H, W]``, raw values) into multi-crop views on their device.

        Args:
            key: the step's random key (e.g. from the run's seed and the step): with the sample's
                index it decides every random choice (:class:`~geodino.rng.RowRandom`).
            offset: this batch is rows ``[offset, offset + B)`` of the global batch; its crops
                are those one call with the whole global batch would make for these rows.
        """
        if images.ndim != 4 or images.shape[1] != self.in_chans:
            raise ValueError(f"expected images [B, {self.in_chans}, H, W], got {tuple(images.shape)}")
        b, _, height, width = images.shape
        rng = RowRandom(key, offset, b)

        # Fixed draw order: global views, local views, then one modality drop per student crop.
        global_params = sample_group_params(self.global_recipes, rng, height, width)
        local_params = None
        if self.n_local:
            local_params = sample_group_params([self.local_recipe] * self.n_local, rng, height, width)
        drops = None
        if self.modality_table is not None and self.modality_drop_p > 0:
            drops = sample_modality_drop(rng, 2 + self.n_local, len(self.modality_table), self.modality_drop_p)

        unit = self._to_unit(images)
        globals_ = self._render(unit, global_params, self.global_recipes[0].size)
        teacher = list(globals_.unbind(0))
        student_globals = teacher
        if drops is not None:
            # "all": teacher and student share the masked globals, so mask them in place;
            # "student": the teacher keeps the unmasked tensor and the student gets a masked copy.
            shared = self.modality_drop_on == "all"
            masked = self._drop(globals_, drops[:2], inplace=shared)
            student_globals = list(masked.unbind(0))
            if shared:
                teacher = student_globals
        student = list(student_globals)
        if local_params is not None:
            locals_ = self._render(unit, local_params, self.local_recipe.size)
            if drops is not None:
                locals_ = self._drop(locals_, drops[2:], inplace=True)
            student.extend(locals_.unbind(0))
        return Views(teacher=teacher, student=student)

    # ------------------------------------------------------------------ steps

    def _affine(self, name: str, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-band ``(scale, shift)`` ``[1, C, 1, 1]`` of an affine map ``x -> x scale + shift``,
        worked out on the host in float64 and cached per device and dtype, so that the map is one
        launch (``addcmul``): ``"to_unit"``, raw values to unit space (multispectral: mean +- 2
        std -> [0, 1]); ``"standardise"``, unit space to standardised values (rgb: ``(x - mean) /
        std``; multispectral: ``4 u - 2``)."""
        key = (name, device, dtype)
        if key not in self._stats:
            mean, std = self.mean.view(1, -1, 1, 1), self.std.view(1, -1, 1, 1)
            if name == "to_unit":
                scale, shift = 1.0 / (4.0 * std), 0.5 - mean / (4.0 * std)
            elif self.mode == "rgb":
                scale, shift = 1.0 / std, -mean / std
            else:
                scale, shift = torch.full_like(std, 4.0), torch.full_like(std, -2.0)
            self._stats[key] = (scale.to(device=device, dtype=dtype), shift.to(device=device, dtype=dtype))
        return self._stats[key]

    def _physical_constants(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per band, on the host: the unit-space offset of a gain (``(mean - 2 std) / (4 std)``),
        the unit-space step of one decade of gain on a dB band (``10 / (4 std)``), and which bands
        are in dB."""
        return (((self.mean - 2 * self.std) / (4 * self.std)).numpy(), (10.0 / (4 * self.std)).numpy(),
                self.is_db.numpy())

    def _to_unit(self, images: torch.Tensor) -> torch.Tensor:
        """Raw values to unit space (rgb: unchanged; multispectral: mean +- 2 std -> [0, 1])."""
        x = images if images.is_floating_point() else images.float()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        if self.mode == "rgb":
            return x
        scale, shift = self._affine("to_unit", x.device, x.dtype)
        # Done once on the source batch, which is smaller than all its crops together; the affine
        # map commutes with the (linear) resampling.
        return torch.addcmul(shift, x, scale)

    def _render(self, unit: torch.Tensor, params: ViewParams, size: int) -> torch.Tensor:
        """Crop, augment and standardise a group of same-size views: returns ``[V, B, C, s, s]``."""
        v, b = params.num_views, params.num_samples
        x = resized_crops(unit, params.boxes, params.flip, size)
        jitter, factors, gray = params.flat("jitter"), params.flat("factors"), params.flat("grayscale")
        if self.mode == "rgb":
            # The reference pipeline works on 8-bit images: bicubic overshoot never leaves [0, 1].
            x.clamp_(0.0, 1.0)
            passes = [*intensity.rgb_color_jitter_passes(jitter, factors, params.flat("order")),
                      *intensity.rgb_grayscale_passes(gray)]
        elif self.band_ops == "physical":
            offset, step, is_db = self._physical_constants()
            passes = [*intensity.physical_jitter_passes(jitter, factors, offset, step, is_db),
                      *intensity.modality_grayscale_passes(gray, self.gray_groups)]
        else:
            passes = [*intensity.multispectral_jitter_passes(jitter, factors),
                      *intensity.band_mean_grayscale_passes(gray)]
        kernel = intensity.blur_kernel_size(self.blur_sigma[1], size)
        passes += intensity.gaussian_blur_passes(params.flat("blur"), params.flat("sigma"), kernel, x.shape[1])
        passes += intensity.solarize_passes(params.flat("solarize"))
        # Every pass's rows and parameters reach the device in one copy.
        x = self._standardise(intensity.run_passes(x, passes))
        return x.view(v, b, *x.shape[1:])

    def _standardise(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self._affine("standardise", x.device, x.dtype)
        return torch.addcmul(shift, x, scale, out=x)

    def _drop(self, views: torch.Tensor, drops: torch.Tensor, *, inplace: bool) -> torch.Tensor:
        """Modality masking of ``[V, B, C, s, s]`` views with CPU drops ``[V, B]``."""
        assert self.modality_table is not None
        v, b = drops.shape
        flat = views.reshape(v * b, *views.shape[2:])
        out = apply_modality_drop(
            flat, drops.reshape(-1), self.modality_table, self.modality_fill, inplace=inplace
        )
        return out.view(views.shape)
