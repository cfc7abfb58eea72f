"""Held-out worlds for ``geodino bench pays``: seeded generators of multi-label SAR-optical patches
in the BigEarthNet-MM band layout, none of them the embedded default (:mod:`geodino.data.synthetic`).

A patch is ``{"s2": uint16 [12, S, S], "s1": float32 [2, S, S], "labels": uint8 [K]}``: Sentinel-2
L2A-like digital numbers (reflectance x 10^4) for B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12
on the 10 m grid, Sentinel-1-like backscatter VH, VV in dB, and a multi-hot vector over the world's
K classes (a class is in the label when it covers at least :data:`LABEL_SHARE` of the patch). When
written as shards (:func:`write_world`) the 20 m and 60 m bands are stored at their own, coarser
size (a coarse pixel is the mean of the 10 m pixels it covers), exactly as the BigEarthNet shards
store them, so the reader upsamples them back onto the grid.

The three worlds differ in what makes a class, in the layout of a scene and in the nuisances:

- ``mixtures`` (:func:`mixtures`): 10 *spectral* classes, 4 vegetation types told apart by their
  phenology (the season of the patch decides how green each is), 2 soils, 2 waters, 2 built-up
  surfaces, with overlapping spectra within a family. Pixels are linear mixtures of the classes'
  spectra, weighted by smooth random abundance fields: there are no crisp regions. SAR backscatter
  mixes the same way. Nuisances: season, soil moisture (darker soil, brighter radar), illumination
  gain, haze, a cloud over one patch in five.
- ``patterns`` (:func:`patterns`): 6 *texture/shape* classes (parallel fields, a checkerboard of
  blocks, centre-pivot discs, thin linear networks, point-like objects, irregular blobs) drawn in
  materials picked at random per instance from one palette shared by every class, so the mean
  spectrum says almost nothing about the class. Classes sit in random rectangles over a plain
  background, each with its own orientation and scale. Nuisances: illumination gain, haze, clouds.
- ``radar`` (:func:`radar`): 6 classes in 3 optical look-alike pairs that only the radar tells
  apart: forest and flooded forest (polarisation ratio: double bounce raises VV), smooth and
  rough soil (backscatter level), calm and wind-streaked water (the same mean backscatter, a
  different texture). Scenes are cadastral parcels; a cloud covers part of every other patch.

Sensor realism shared by all: illumination gain (x0.6-1.5, log-uniform) and additive haze (path
radiance falling as wavelength^-2) on the optical bands only, optical clouds with soft edges,
Gaussian sensor noise, rounding to uint16 digital numbers; radar as linear power with a noise
floor, multiplicative speckle drawn from a gamma distribution of :data:`SAR_LOOKS` looks, then dB,
and a per-scene calibration/incidence offset.

Each world's class definitions (spectra, phenology phases, backscatter levels) are drawn from its
``seed``, so every seed is another world of the same kind; a patch is a pure function of
``(world, seed, split, index, size)``, and ``train`` and ``val`` never share a patch.

**The parameters in this file were fixed before any pretraining run was measured on these worlds
and must not be tuned to the results**: a world adjusted until pretraining pays (or does not)
measures the adjustment, not the method. A new question needs a new world (a new function and
name), not an edited one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from geodino.data.card import DatasetCard

# The BigEarthNet-MM band order (the bigearthnet-v1 card) and the S2 centre wavelengths (nm).
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
S1_BANDS = ["VH", "VV"]
WAVELENGTH_NM = np.array([443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1610, 2190], dtype=np.float64)
BASE_CARD = "bigearthnet-v1"

LABEL_SHARE = 0.10  # a class is in a patch's label when it covers at least this share of it
SAR_LOOKS = 4.4  # equivalent number of looks of Sentinel-1 IW GRD high resolution
SAR_NOISE_FLOOR = 10 ** (-26 / 10)  # noise-equivalent sigma0 (linear), added before speckle
GAIN_RANGE = (0.6, 1.5)  # per-scene illumination gain on the optical bands, log-uniform
MAX_HAZE = 0.05  # reflectance added at 490 nm by the thickest haze
SPLITS = {"train": 1, "val": 2}

# Archetypal reflectance spectra (at the 12 S2 bands) that class spectra are drawn around.
_GREEN = np.array([0.030, 0.040, 0.075, 0.040, 0.100, 0.250, 0.320, 0.350, 0.360, 0.330, 0.200, 0.100])
_DRY = np.array([0.050, 0.060, 0.090, 0.110, 0.140, 0.180, 0.210, 0.240, 0.250, 0.240, 0.300, 0.220])
_SOIL = np.array([0.080, 0.100, 0.140, 0.180, 0.200, 0.215, 0.230, 0.250, 0.260, 0.260, 0.340, 0.300])
_WATER = np.array([0.070, 0.065, 0.055, 0.035, 0.030, 0.022, 0.020, 0.018, 0.016, 0.012, 0.006, 0.004])
_BUILT = np.array([0.120, 0.130, 0.140, 0.150, 0.155, 0.160, 0.165, 0.175, 0.178, 0.175, 0.200, 0.185])
_CLOUD = np.array([1.00, 1.00, 0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.90, 0.75, 0.55])

# Normalised log-wavelength in [-1, 1]: the axis smooth spectral perturbations are polynomials of.
_X = 2 * (np.log(WAVELENGTH_NM) - np.log(WAVELENGTH_NM[0])) / (np.log(WAVELENGTH_NM[-1]) -
                                                                 np.log(WAVELENGTH_NM[0])) - 1


@dataclass(frozen=True)
class World:
    """A world generator: its classes and the function that makes patch ``index``."""

    name: str
    classes: tuple[str, ...]
    make: Callable[..., dict[str, np.ndarray]]
    summary: str


# ------------------------------------------------------------------------------- building blocks
def _rng(world: str, seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([sum(map(ord, world)), seed, *stream])


def _smooth_field(rng: np.random.Generator, size: int, sigma_px: float, n: int = 1) -> np.ndarray:
    """``n`` zero-mean, unit-variance Gaussian random fields [n, size, size] of correlation length
    ``sigma_px`` (white noise blurred in the Fourier domain; periodic at the borders)."""
    noise = rng.standard_normal((n, size, size))
    f = np.fft.fftfreq(size)
    kernel = np.exp(-2 * (np.pi * sigma_px) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    field = np.fft.ifft2(np.fft.fft2(noise) * kernel).real
    field -= field.mean(axis=(1, 2), keepdims=True)
    return field / np.maximum(field.std(axis=(1, 2), keepdims=True), 1e-9)


def _shape_perturbation(rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A smooth multiplicative change of a spectrum's shape (linear + quadratic in log-wavelength)."""
    a1, a2 = rng.normal(0.0, amplitude, size=2)
    return np.exp(a1 * _X + a2 * (_X**2 - 1 / 3))


def _greenness(season: float, phase: float, amplitude: float) -> float:
    """Phenology: 1 at the class's peak ``phase`` of the year, down to ``1 - amplitude``."""
    return 1.0 - amplitude * 0.5 * (1.0 - np.cos(2 * np.pi * (season - phase)))


def _vegetation(greenness: float) -> np.ndarray:
    return greenness * _GREEN + (1.0 - greenness) * _DRY


def _db(x: np.ndarray) -> np.ndarray:
    return 10 * np.log10(x)


def _linear(db: np.ndarray | float) -> np.ndarray:
    return 10 ** (np.asarray(db, dtype=np.float64) / 10)


def _optical_sensor(rng: np.random.Generator, reflectance: np.ndarray, cloud_p: float,
                    cloud_cover: tuple[float, float]) -> np.ndarray:
    """Ground reflectance [12, S, S] → L2A-like digital numbers (uint16): illumination gain, haze,
    maybe a cloud, sensor noise, rounding. None of it reaches the radar."""
    size = reflectance.shape[-1]
    gain = np.exp(rng.uniform(np.log(GAIN_RANGE[0]), np.log(GAIN_RANGE[1])))
    rho = reflectance * gain
    haze = MAX_HAZE * rng.uniform() ** 2 * (490.0 / WAVELENGTH_NM) ** 2  # thin haze is the common case
    rho = rho + haze[:, None, None] * (1 + 0.3 * _smooth_field(rng, size, size / 4))
    if rng.uniform() < cloud_p:
        field = _smooth_field(rng, size, size / 8)[0]
        cover = rng.uniform(*cloud_cover)
        threshold = np.quantile(field, 1 - cover)
        opacity = np.clip((field - threshold) / 0.5, 0.0, 1.0)  # soft edges
        brightness = rng.uniform(0.35, 0.6)
        rho = (1 - opacity) * rho + opacity * (brightness * _CLOUD)[:, None, None]
    rho = rho + rng.normal(0.0, 1.0, size=rho.shape) * (0.003 + 0.01 * np.abs(rho))
    return np.clip(np.rint(rho * 10_000), 0, 65_535).astype(np.uint16)


def _radar_sensor(rng: np.random.Generator, sigma0: np.ndarray) -> np.ndarray:
    """Linear backscatter [2, S, S] (VH, VV) → dB with a noise floor, gamma speckle and a per-scene
    calibration/incidence offset."""
    offset = _linear(rng.normal(0.0, 0.7))
    power = (sigma0 * offset + SAR_NOISE_FLOOR) * rng.gamma(SAR_LOOKS, 1 / SAR_LOOKS, size=sigma0.shape)
    return _db(np.maximum(power, 1e-6)).astype(np.float32)


def _labels(shares: np.ndarray) -> np.ndarray:
    labels = shares >= LABEL_SHARE
    labels[int(np.argmax(shares))] = True  # a patch always has a label
    return labels.astype(np.uint8)


def _patch(s2: np.ndarray, s1: np.ndarray, shares: np.ndarray) -> dict[str, np.ndarray]:
    return {"s2": s2, "s1": s1, "labels": _labels(shares)}


# --------------------------------------------------------------------------------- world 1: mixtures
MIXTURE_CLASSES = ("winter cereal", "maize", "grassland", "deciduous forest", "bare soil", "sand",
                   "clear water", "turbid water", "dense built-up", "industrial")
# Per class: family, phenology (peak phase, amplitude) for vegetation, backscatter (VH, VV dB).
_MIXTURE_DEFS = [
    ("veg", (0.35, 0.9), (-17.0, -11.0)),
    ("veg", (0.62, 0.9), (-16.0, -10.0)),
    ("veg", (0.45, 0.3), (-19.0, -12.0)),
    ("veg", (0.55, 0.6), (-14.0, -8.0)),
    ("soil", None, (-21.0, -13.0)),
    ("soil", None, (-23.0, -15.0)),
    ("water", None, (-25.0, -19.0)),
    ("water", None, (-24.0, -17.0)),
    ("built", None, (-12.0, -5.0)),
    ("built", None, (-14.0, -7.0)),
]


@functools.lru_cache(maxsize=64)
def _mixture_world(seed: int) -> dict[str, Any]:
    """The classes of the ``mixtures`` world of this seed: spectral shapes, phases, backscatter."""
    rng = _rng("mixtures", seed, 0)
    shapes, phases, amplitudes, sar = [], [], [], []
    for family, phenology, backscatter in _MIXTURE_DEFS:
        shapes.append(_shape_perturbation(rng, 0.12))
        phase, amplitude = phenology or (0.0, 0.0)
        phases.append(phase + rng.normal(0.0, 0.05))
        amplitudes.append(amplitude)
        sar.append(_linear(np.array(backscatter) + rng.normal(0.0, 1.0, size=2)))
    # Turbid water carries sediment: brighter in the visible bands, as drawn for this seed.
    sediment = rng.uniform(0.02, 0.05) * np.exp(-((WAVELENGTH_NM - 600) / 120) ** 2)
    return {"shapes": shapes, "phases": phases, "amplitudes": amplitudes, "sar": np.array(sar),
            "sediment": sediment}


def mixtures(index: int, seed: int = 0, size: int = 48, split: str = "train") -> dict[str, np.ndarray]:
    """Patch ``index`` of the ``mixtures`` world (see the module docstring).

    One to four classes are present; their abundances are a softmax of smooth random fields
    (correlation length 3-10 px) plus a per-class bias, and a pixel's reflectance and backscatter
    are the abundance-weighted sums of the classes'. The label holds the classes whose mean
    abundance is at least :data:`LABEL_SHARE`.
    """
    world = _mixture_world(seed)
    rng = _rng("mixtures", seed, SPLITS[split], index)
    k = len(MIXTURE_CLASSES)
    n_present = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.35, 0.3, 0.15]))
    present = rng.choice(k, size=n_present, replace=False)
    logits = np.stack([3.0 * _smooth_field(rng, size, rng.uniform(3, 10))[0] + rng.normal(0, 1.0)
                       for _ in present])
    weights = np.exp(logits - logits.max(axis=0))
    abundance = weights / weights.sum(axis=0)

    season, moisture = rng.uniform(), rng.uniform()
    spectra, sigma0 = [], []
    for c in present:
        family = _MIXTURE_DEFS[c][0]
        if family == "veg":
            base = _vegetation(_greenness(season, world["phases"][c], world["amplitudes"][c]))
            if MIXTURE_CLASSES[c] == "deciduous forest":
                base = base * np.where(WAVELENGTH_NM < 700, 0.8, 1.0)  # shaded canopy
        elif family == "soil":
            base = _SOIL * (1 - 0.35 * moisture)
        elif family == "water":
            base = _WATER + (world["sediment"] if MIXTURE_CLASSES[c] == "turbid water" else 0)
        else:
            base = _BUILT
        spectra.append(base * world["shapes"][c])
        wet = _linear(3.0 * moisture) if family == "soil" else 1.0  # wet soil backscatters more
        sigma0.append(world["sar"][c] * wet)
    reflectance = np.einsum("cb,cyx->byx", np.array(spectra), abundance)
    power = np.einsum("cp,cyx->pyx", np.array(sigma0), abundance)
    shares = np.zeros(k)
    shares[present] = abundance.mean(axis=(1, 2))
    s2 = _optical_sensor(rng, reflectance, cloud_p=0.2, cloud_cover=(0.05, 0.4))
    return _patch(s2, _radar_sensor(rng, power), shares)


# --------------------------------------------------------------------------------- world 2: patterns
PATTERN_CLASSES = ("parallel fields", "block grid", "pivot discs", "linear network", "point objects",
                   "irregular blobs")
# Materials every class draws its two colours from: reflectance and backscatter (VH, VV dB).
_MATERIALS = [
    (_vegetation(0.9), (-15.0, -9.0)),
    (_DRY, (-18.0, -11.0)),
    (_SOIL, (-20.0, -13.0)),
    (_WATER, (-25.0, -19.0)),
    (_BUILT, (-13.0, -6.0)),
    (_BUILT * 0.5, (-16.0, -9.0)),
]


@functools.lru_cache(maxsize=64)
def _pattern_world(seed: int) -> dict[str, Any]:
    """This seed's palette: each material's spectral shape and backscatter jittered."""
    rng = _rng("patterns", seed, 0)
    spectra = [spectrum * _shape_perturbation(rng, 0.1) for spectrum, _ in _MATERIALS]
    sar = [_linear(np.array(db) + rng.normal(0.0, 1.0, size=2)) for _, db in _MATERIALS]
    return {"spectra": np.array(spectra), "sar": np.array(sar)}


def _pattern(kind: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """A foreground share in [0, 1] per pixel [size, size] for pattern class ``kind``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    if kind == 0:  # parallel fields: stripes of 4-8 px period
        period = rng.uniform(4, 8)
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float64)
    if kind == 1:  # block grid: checkerboard of 3-6 px cells
        cell = rng.uniform(3, 6)
        return ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float64)
    if kind == 2:  # pivot discs of radius 3-6 px on a jittered lattice
        radius = rng.uniform(3, 6)
        step = 2.3 * radius
        cu, cv = np.round(u / step) * step, np.round(v / step) * step
        return (((u - cu) ** 2 + (v - cv) ** 2) <= radius**2).astype(np.float64)
    if kind == 3:  # linear network: 3-6 straight lines of 1-2 px width
        out = np.zeros((size, size))
        for _ in range(int(rng.integers(3, 7))):
            (py, px), a, width = rng.uniform(0, size, size=2), rng.uniform(0, np.pi), rng.uniform(1.0, 2.0)
            distance = np.abs((xx - px) * np.sin(a) - (yy - py) * np.cos(a))  # to the line through (px, py)
            out = np.maximum(out, (distance <= width / 2).astype(np.float64))
        return out
    if kind == 4:  # point objects: 2x2 px dots at 6-10 % density
        dots = (rng.uniform(size=(size, size)) < rng.uniform(0.015, 0.025)).astype(np.float64)
        return np.clip(dots + np.roll(dots, 1, 0) + np.roll(dots, 1, 1) + np.roll(dots, (1, 1), (0, 1)), 0, 1)
    # irregular blobs: a smooth field of 2-4 px correlation length, thresholded at its median
    return (_smooth_field(rng, size, rng.uniform(2, 4))[0] > 0).astype(np.float64)


def patterns(index: int, seed: int = 0, size: int = 48, split: str = "train") -> dict[str, np.ndarray]:
    """Patch ``index`` of the ``patterns`` world (see the module docstring).

    A plain background material, then one to three classes, each in an axis-aligned rectangle
    (sides 35-80 % of the patch, later ones on top) drawn as its pattern between two materials
    picked at random from the palette. The label holds the classes whose visible rectangle covers
    at least :data:`LABEL_SHARE` of the patch.
    """
    world = _pattern_world(seed)
    rng = _rng("patterns", seed, SPLITS[split], index)
    n_materials = len(_MATERIALS)
    background = int(rng.integers(n_materials))
    owner = np.full((size, size), -1)
    fg_share = np.zeros((size, size))
    fg_material = np.full((size, size), background)
    bg_material = np.full((size, size), background)
    n_present = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
    for kind in rng.choice(len(PATTERN_CLASSES), size=n_present, replace=False):
        h, w = (rng.uniform(0.35, 0.8, size=2) * size).astype(int)
        y0, x0 = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        fg, bg = rng.choice(n_materials, size=2, replace=False)
        box = (slice(y0, y0 + h), slice(x0, x0 + w))
        owner[box] = kind
        fg_share[box] = _pattern(int(kind), rng, size)[box]
        fg_material[box], bg_material[box] = fg, bg
    # Plain background: the material with a gentle smooth variation.
    variation = 1 + 0.05 * _smooth_field(rng, size, 6)[0]
    spectra, sar = world["spectra"], world["sar"]
    reflectance = (fg_share * spectra[fg_material].transpose(2, 0, 1)
                   + (1 - fg_share) * spectra[bg_material].transpose(2, 0, 1)) * variation
    power = fg_share * sar[fg_material].transpose(2, 0, 1) + (1 - fg_share) * sar[bg_material].transpose(2, 0, 1)
    shares = np.array([(owner == c).mean() for c in range(len(PATTERN_CLASSES))])
    s2 = _optical_sensor(rng, reflectance, cloud_p=0.2, cloud_cover=(0.05, 0.4))
    return _patch(s2, _radar_sensor(rng, power), shares)


# ------------------------------------------------------------------------------------ world 3: radar
RADAR_CLASSES = ("forest", "flooded forest", "smooth soil", "rough soil", "calm water", "wind-streaked water")
# Per class: optical look-alike group, backscatter (VH, VV dB), texture (None = homogeneous, else
# the log-amplitude of a spatially correlated multiplicative texture of mean 1).
_RADAR_DEFS = [
    ("veg", (-14.0, -8.5), 0.3),
    ("veg", (-14.5, -4.0), 0.3),  # double bounce (trunk and water surface): VV up, VH hardly
    ("soil", (-22.0, -15.0), None),
    ("soil", (-17.0, -10.0), None),
    ("water", (-24.0, -18.0), None),
    ("water", (-24.0, -18.0), 0.9),  # the same mean backscatter as calm water, streaked by wind
]


@functools.lru_cache(maxsize=64)
def _radar_world(seed: int) -> dict[str, Any]:
    rng = _rng("radar", seed, 0)
    # The two members of a group share one optical spectrum; their radar signatures are jittered.
    group_shape = {g: _shape_perturbation(rng, 0.1) for g in ("veg", "soil", "water")}
    sar, jitter = [], {}
    for group, backscatter, _ in _RADAR_DEFS:
        shift = rng.normal(0.0, 1.0, size=2)
        if group == "water":  # both waters shift together: their mean backscatter stays equal
            shift = jitter.setdefault("water", shift)
        sar.append(_linear(np.array(backscatter) + shift))
    return {"group_shape": group_shape, "sar": np.array(sar), "phase": rng.uniform(0.4, 0.6)}


def _parcels(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cadastral layout [size, size] of parcel ids: 2-4 rows, each cut into 1-4 parcels."""
    rows = np.sort(rng.choice(np.arange(4, size - 3), size=int(rng.integers(1, 4)), replace=False))
    ids = np.zeros((size, size), dtype=np.int64)
    bounds = [0, *rows.tolist(), size]
    next_id = 0
    for top, bottom in zip(bounds[:-1], bounds[1:]):
        cuts = np.sort(rng.choice(np.arange(4, size - 3), size=int(rng.integers(0, 4)), replace=False))
        edges = [0, *cuts.tolist(), size]
        for left, right in zip(edges[:-1], edges[1:]):
            ids[top:bottom, left:right] = next_id
            next_id += 1
    return ids.T if rng.uniform() < 0.5 else ids


def radar(index: int, seed: int = 0, size: int = 48, split: str = "train") -> dict[str, np.ndarray]:
    """Patch ``index`` of the ``radar`` world (see the module docstring).

    One to three classes are present, each parcel of the cadastral layout takes one of them (every
    present class at least one parcel). A parcel's optical spectrum is its group's, varied by
    ±5 % per parcel; its backscatter is its class's, times the class texture. The label holds
    the classes covering at least :data:`LABEL_SHARE` of the patch.
    """
    world = _radar_world(seed)
    rng = _rng("radar", seed, SPLITS[split], index)
    ids = _parcels(rng, size)
    n_parcels = int(ids.max()) + 1
    n_present = min(int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3])), n_parcels)
    present = rng.choice(len(RADAR_CLASSES), size=n_present, replace=False)
    parcel_class = np.concatenate([present, rng.choice(present, size=n_parcels - n_present)])
    rng.shuffle(parcel_class)
    classes = parcel_class[ids]

    season = rng.uniform()
    reflectance = np.zeros((len(S2_BANDS), size, size))
    power = np.zeros((2, size, size))
    for parcel in range(n_parcels):
        where = ids == parcel
        c = int(parcel_class[parcel])
        group, _, texture = _RADAR_DEFS[c]
        if group == "veg":
            base = _vegetation(_greenness(season, world["phase"], 0.5))
        else:
            base = _SOIL if group == "soil" else _WATER
        spectrum = base * world["group_shape"][group] * np.exp(rng.normal(0.0, 0.05))
        reflectance[:, where] = spectrum[:, None]
        sigma0 = world["sar"][c][:, None] * np.ones((1, int(where.sum())))
        if texture is not None:
            field = _smooth_field(rng, size, 1.5)[0][where]
            sigma0 = sigma0 * np.exp(texture * field - texture**2 / 2)  # mean 1 (log-normal)
        power[:, where] = sigma0
    shares = np.bincount(classes.ravel(), minlength=len(RADAR_CLASSES)) / classes.size
    s2 = _optical_sensor(rng, reflectance, cloud_p=0.5, cloud_cover=(0.1, 0.7))
    return _patch(s2, _radar_sensor(rng, power), shares)


WORLDS: dict[str, World] = {
    "mixtures": World("mixtures", MIXTURE_CLASSES, mixtures,
                      "spectral classes mixed below the pixel, phenology and soil moisture"),
    "patterns": World("patterns", PATTERN_CLASSES, patterns,
                      "texture/shape classes in random materials (the mean spectrum is uninformative)"),
    "radar": World("radar", RADAR_CLASSES, radar, "optical look-alike pairs that only the radar separates"),
}


def get_world(name: str) -> World:
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; worlds: {', '.join(WORLDS)}")
    return WORLDS[name]


def make_patch(world: str, index: int, seed: int = 0, size: int = 48, split: str = "train") -> dict[str, np.ndarray]:
    """Patch ``index`` of ``world`` (``s2`` uint16 [12, S, S], ``s1`` float32 [2, S, S], ``labels``
    uint8 [K])."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if size < 12:
        raise ValueError(f"patches need at least 12 px (the parcels and patterns are several px wide), got {size}")
    return get_world(world).make(index, seed=seed, size=size, split=split)


# ------------------------------------------------------------------------------------- as shards
def world_card(world: str, seed: int, size: int) -> DatasetCard:
    """The card of a world's shards: BigEarthNet-MM's bands, the world's classes, ``labels``."""
    base = DatasetCard.load(BASE_CARD)
    w = get_world(world)
    return DatasetCard(
        name=f"pays-{world}-seed{seed}", bands=list(base.bands), classes=list(w.classes),
        description=f"geodino bench pays held-out world {world!r} (seed {seed}, {size} px): {w.summary}.",
        extra={"labels": ["labels"], "grid": {"height": size, "width": size, "resolution_m": 10},
               "source": f"geodino.bench.worlds.{w.make.__name__}"})


def _area_downsample(band: np.ndarray, out: int) -> np.ndarray:
    """Mean of the 10 m pixels each coarser pixel covers (edges rounded outwards when the sizes do
    not divide)."""
    size = band.shape[-1]
    if out >= size:
        return band
    if size % out == 0:
        f = size // out
        return band.reshape(out, f, out, f).mean(axis=(1, 3))
    edges = [(int(np.floor(i * size / out)), int(np.ceil((i + 1) * size / out))) for i in range(out)]
    return np.array([[band[a:b, c:d].mean() for c, d in edges] for a, b in edges])


@dataclass(frozen=True)
class WorldItem:
    key: str
    split: str
    index: int


def read_item(item: WorldItem, world: str, seed: int, size: int, resolutions: tuple[float, ...]) -> Any:
    """One patch as shard parts, its coarse bands stored at their own size (module-level so that
    worker processes can run it)."""
    from geodino.data.shards.format import SampleParts, group_bands

    patch = make_patch(world, item.index, seed=seed, size=size, split=item.split)
    bands = []
    for name, band, resolution in zip(S2_BANDS, patch["s2"], resolutions):
        factor = max(1, int(round(resolution / 10)))
        stored = _area_downsample(band.astype(np.float64), max(1, size // factor))
        bands.append((name, np.rint(stored).astype(np.uint16)))
    bands += list(zip(S1_BANDS, patch["s1"]))
    meta = {"bands": S2_BANDS + S1_BANDS, "split": item.split, "source": f"pays-world-{world}", "world": world,
            "seed": seed, "index": item.index}
    return SampleParts(key=item.key, image=group_bands(bands), meta=meta, grid=(size, size),
                       arrays={"labels": patch["labels"]})


def write_world(out: str | Path, world: str, seed: int = 0, size: int = 48, train_samples: int = 2048,
                val_samples: int = 512, shard_size: int = 256, workers: int = 1,
                progress: bool = True) -> dict[str, Any]:
    """Write ``world`` as train and val shards with ``card.yaml``, its band statistics measured on
    the train split. Re-running skips the shards already written and keeps measured statistics."""
    from geodino.data.shards.format import CARD_FILE
    from geodino.data.shards.writer import write_shards
    from geodino.data.splits import training_split
    from geodino.data.stats import compute_band_statistics, write_statistics

    out = Path(out)
    card = world_card(world, seed, size)
    items = [WorldItem(f"{world}_train_{i:07d}", "train", i) for i in range(train_samples)]
    items += [WorldItem(f"{world}_val_{i:07d}", "val", i) for i in range(val_samples)]
    resolutions = tuple(float(b.resolution_m or 10) for b in card.bands[: len(S2_BANDS)])
    read = functools.partial(read_item, world=world, seed=seed, size=size, resolutions=resolutions)
    source = {"kind": "pays-world", "world": world, "seed": seed, "size": size}
    summary = write_shards(out, items, read, card, shard_size=shard_size, workers=workers, strict=True, seed=seed,
                           source=source, progress=progress)
    measured = DatasetCard.load(out / CARD_FILE).extra.get("statistics_from") or {}
    if measured.get("pixels_per_band") != train_samples * size * size:  # none yet, or of other data
        stats = compute_band_statistics(training_split(out).paths, progress=progress)
        write_statistics(stats, out / CARD_FILE)
    return summary
