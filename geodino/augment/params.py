"""Sampling of the random parameters of multi-crop views, on the CPU, from a :class:`~geodino.rng.RowRandom`.

Every random number the augmentation uses is drawn here, before any pixel is touched, so that:

- a run is reproducible from the step's key alone (the global RNG is never used);
- a sample's parameters depend only on the key and its index in the global batch, and the number
  and order of draws only on the shapes asked for (never on the values drawn, e.g. how many crop
  attempts were rejected): a process draws its own rows only, and gets the numbers one process
  with the whole global batch would;
- the pixel work on the accelerator never waits for the host to decide something.

Parameters are kept as numpy arrays with a leading ``[views, samples]`` shape: the ops read them
on the host to pick rows and build small per-row tables, and only those tables travel to the
device, one copy each. Host arithmetic on them as torch tensors would be one dispatched op per
operation on the step's critical path (issue 14).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from geodino.rng import RowRandom

#: Aspect-ratio range of torchvision's ``RandomResizedCrop`` (width / height).
DEFAULT_RATIO: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
#: How many (area, ratio) proposals are tried before falling back to a centre crop, as in torchvision.
CROP_ATTEMPTS = 10


def sample_crop_boxes(
    rng: RowRandom,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = DEFAULT_RATIO,
    *,
    attempts: int = CROP_ATTEMPTS,
) -> torch.Tensor:
    """Draw a RandomResizedCrop box for each of ``rng``'s rows, for a ``height`` x ``width`` image.

    Same distribution as torchvision's ``RandomResizedCrop.get_params``, vectorised over samples:
    propose an area fraction ``~ U(scale)`` and an aspect ratio log-uniform in ``ratio``; the
    first of ``attempts`` proposals whose rounded box fits inside the image wins and its position
    is uniform; if none fits, take the largest centred box whose aspect ratio lies in ``ratio``.
    All ``attempts`` proposals are drawn for every sample, so the draws are the same whatever the
    outcome.

    Returns:
        ``int64`` tensor ``[n, 4]`` of ``(top, left, box_height, box_width)`` in pixels.
    """
    return torch.from_numpy(_crop_boxes(rng, height, width, scale, ratio, attempts))


def _crop_boxes(rng: RowRandom, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                attempts: int) -> np.ndarray:
    # numpy, not torch: these are a few hundred numbers, and every torch op on them would be a
    # dispatch on the host's critical path (about 600 ops a step for all the views, issue 14).
    if height < 1 or width < 1:
        raise ValueError(f"need a non-empty image, got {height}x{width}")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must satisfy 0 < low <= high, got {scale}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < low <= high, got {ratio}")
    area = float(height * width)
    u = rng.rand(2 * attempts + 2)  # one draw: every proposal's area and aspect, then the position
    fraction = scale[0] + (scale[1] - scale[0]) * u[:, :attempts]
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, attempts : 2 * attempts]
    position = u[:, 2 * attempts :]

    aspect = np.exp(log_ratio)
    # np.round rounds half to even, like the Python round() torchvision uses.
    w = np.round(np.sqrt(area * fraction * aspect))
    h = np.round(np.sqrt(area * fraction / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.argmax(axis=1)  # the first proposal that fits
    found = fits.any(axis=1)
    rows = np.arange(len(first))
    h, w = h[rows, first], w[rows, first]

    # Fallback: the whole image, trimmed to the nearest allowed aspect ratio.
    image_ratio = width / height
    if image_ratio < ratio[0]:
        fb_w, fb_h = width, int(round(width / ratio[0]))
    elif image_ratio > ratio[1]:
        fb_w, fb_h = int(round(height * ratio[1])), height
    else:
        fb_w, fb_h = width, height
    h = np.where(found, h, fb_h)
    w = np.where(found, w, fb_w)

    # Uniform integer offsets in [0, H - h] and [0, W - w] (torch.randint's distribution);
    # the fallback box is centred instead.
    top = np.minimum(np.floor(position[:, 0] * (height - h + 1)), height - h)
    left = np.minimum(np.floor(position[:, 1] * (width - w + 1)), width - w)
    top = np.where(found, top, np.floor((height - h) / 2))
    left = np.where(found, left, np.floor((width - w) / 2))
    return np.stack([top, left, h, w], axis=1).astype(np.int64)


@dataclass(frozen=True)
class ViewRecipe:
    """How one kind of view is made: its crop and the probabilities / strengths of each op."""

    size: int
    scale: tuple[float, float]
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    ratio: tuple[float, float] = DEFAULT_RATIO

    def __post_init__(self) -> None:
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} strength must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")
        if self.size < 1:
            raise ValueError(f"crop size must be >= 1, got {self.size}")


#: Uniforms per sample a view draws besides its crop: flip, jitter, 4 factors, 4 for the order,
#: grayscale, blur, sigma, solarize.
VIEW_COLUMNS = 14

#: Order of the colour-jitter factors in ``ViewParams.factors`` (and of the ops in ``order``).
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


@dataclass
class ViewParams:
    """Random parameters of a group of views, each field a numpy array ``[views, samples, ...]``."""

    boxes: np.ndarray  # int64 [V, N, 4]: top, left, height, width of the crop in the source
    flip: np.ndarray  # bool [V, N]: mirror left-right
    jitter: np.ndarray  # bool [V, N]: apply colour jitter
    factors: np.ndarray  # float64 [V, N, 4]: brightness, contrast, saturation, hue
    order: np.ndarray  # int64 [V, N, 4]: a permutation of JITTER_OPS, applied left to right
    grayscale: np.ndarray  # bool [V, N]
    blur: np.ndarray  # bool [V, N]
    sigma: np.ndarray  # float64 [V, N]: Gaussian blur standard deviation in output pixels
    solarize: np.ndarray  # bool [V, N]

    @property
    def num_views(self) -> int:
        return self.flip.shape[0]

    @property
    def num_samples(self) -> int:
        return self.flip.shape[1]

    def flat(self, name: str) -> np.ndarray:
        """Field ``name`` with views and samples merged into one row axis, view-major: ``[V * N, ...]``."""
        value = getattr(self, name)
        return value.reshape(-1, *value.shape[2:])


def _view_arrays(recipe: ViewRecipe, rng: RowRandom, height: int, width: int) -> dict[str, np.ndarray]:
    """The fields of :class:`ViewParams` for one view, as numpy arrays without the view axis."""
    boxes = _crop_boxes(rng, height, width, recipe.scale, recipe.ratio, CROP_ATTEMPTS)
    u = rng.rand(VIEW_COLUMNS)  # one draw for the rest, column by column as below
    # torchvision ColorJitter ranges: [max(0, 1 - s), 1 + s] for the blend factors, [-h, h] for hue.
    low = np.array([max(0.0, 1 - recipe.brightness), max(0.0, 1 - recipe.contrast),
                    max(0.0, 1 - recipe.saturation), -recipe.hue])
    high = np.array([1 + recipe.brightness, 1 + recipe.contrast, 1 + recipe.saturation, recipe.hue])
    lo, hi = recipe.blur_sigma
    return {
        "boxes": boxes,
        "flip": u[:, 0] < recipe.flip_p,
        "jitter": u[:, 1] < recipe.jitter_p,
        "factors": low + (high - low) * u[:, 2:6],
        # A uniformly random permutation per sample: the ranks of i.i.d. uniforms.
        "order": np.argsort(u[:, 6:10], axis=1).astype(np.int64),
        "grayscale": u[:, 10] < recipe.grayscale_p,
        "blur": u[:, 11] < recipe.blur_p,
        "sigma": lo + (hi - lo) * u[:, 12],
        "solarize": u[:, 13] < recipe.solarize_p,
    }


def sample_view_params(recipe: ViewRecipe, rng: RowRandom, height: int, width: int) -> ViewParams:
    """Draw the parameters of one view for ``rng``'s rows (returned with a view axis of length 1).

    Every field is drawn for every sample, even when its probability is 0 or 1, so that the
    draws that follow do not depend on the recipe's probabilities.
    """
    return sample_group_params([recipe], rng, height, width)


def sample_group_params(recipes: list[ViewRecipe], rng: RowRandom, height: int, width: int) -> ViewParams:
    """Draw the parameters of several views of the same output size, view after view."""
    if len({r.size for r in recipes}) > 1:
        raise ValueError("views grouped together must share one output size")
    views = [_view_arrays(r, rng, height, width) for r in recipes]
    return ViewParams(**{f.name: np.stack([v[f.name] for v in views]) for f in fields(ViewParams)})
