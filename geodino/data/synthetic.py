"""The embedded default dataset: synthetic SAR-optical scenes generated on the fly (no download).

Each scene is a small patch of "land" made of a few regions, each region one land-cover class.
A class is a spectral signature over six Sentinel-2-like bands (reflectance × 10⁴), a
backscatter signature over Sentinel-1-like VH/VV (dB) and a texture (smooth, speckled, striped
fields, blocky built-up). Nuisances hide that structure from raw pixels: a per-scene
illumination gain and haze offset on the optical bands, an incidence-angle offset and speckle on
the SAR bands, sensor noise, and random region layouts. A sample therefore carries:

- ``image``   float32 ``[8, S, S]``: B02 B03 B04 B08 B11 B12 (optical, modality ``s2``) then
  VH VV (SAR, modality ``s1``), the band order of the BigEarthNet shards;
- ``label``   the dominant class (k-NN / linear probe target);
- ``labels``  multi-hot over classes covering at least 10 % of the scene;
- ``mask``    the per-pixel class map (segmentation target).

Scenes are a pure function of ``(seed, index)``, so every process and every resumed run sees the
same data.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from geodino.data.card import Band, DatasetCard

OPTICAL_BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
SAR_BANDS = ["VH", "VV"]

# name: (optical reflectance ×1e4 for B02 B03 B04 B08 B11 B12, SAR dB for VH VV, texture)
CLASSES: dict[str, tuple[list[float], list[float], str]] = {
    "water": ([600, 500, 350, 200, 120, 80], [-26.0, -19.0], "smooth"),
    "forest": ([300, 500, 300, 2800, 1300, 600], [-14.5, -8.0], "speckle"),
    "cropland": ([450, 750, 550, 3200, 1900, 1000], [-16.5, -10.0], "stripes"),
    "grassland": ([500, 800, 700, 2500, 2200, 1300], [-18.5, -11.5], "speckle"),
    "urban": ([1100, 1150, 1200, 1900, 2100, 1900], [-10.5, -4.0], "blocks"),
    "bare soil": ([1000, 1250, 1500, 2000, 2900, 2500], [-19.5, -12.0], "smooth"),
    "wetland": ([450, 600, 450, 1500, 900, 500], [-20.0, -12.5], "stripes"),
    "shrubland": ([600, 850, 850, 2300, 2400, 1600], [-17.0, -10.5], "blocks"),
}


def synthetic_card(num_classes: int = len(CLASSES)) -> DatasetCard:
    bands = [Band(b, "s2", "reflectance x 1e4", 10.0) for b in OPTICAL_BANDS]
    bands += [Band(b, "s1", "dB", 10.0) for b in SAR_BANDS]
    # Per-band statistics of the generator, measured over 2048 training scenes of 32 px; they
    # only need to be close for the standardisation to be well-conditioned.
    return DatasetCard(
        name="synthetic-sar-optical",
        bands=bands,
        mean=[977.0, 1105.0, 978.0, 2292.0, 1898.0, 1296.0, -17.7, -10.8],
        std=[450.0, 491.0, 578.0, 1339.0, 1252.0, 1020.0, 5.2, 5.0],
        classes=list(CLASSES)[:num_classes],
        description="Embedded synthetic SAR-optical scenes (geodino.data.synthetic).",
    )


def _texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "stripes":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(3.0, 6.0)
        return np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    if kind == "blocks":
        cell = int(rng.integers(3, 6))
        grid = rng.choice([-1.0, 1.0], size=(size // cell + 2, size // cell + 2)).astype(np.float32)
        oy, ox = rng.integers(0, cell, size=2)
        return grid[(yy.astype(int) + oy) // cell, (xx.astype(int) + ox) // cell]
    if kind == "speckle":
        noise = rng.standard_normal((size + 2, size + 2)).astype(np.float32)
        # a 3x3 box blur gives blobs of a couple of pixels
        smooth = sum(noise[i : i + size, j : j + size] for i in range(3) for j in range(3)) / 3.0
        return smooth
    return np.zeros((size, size), np.float32)


def make_scene(index: int, seed: int, size: int, num_classes: int) -> dict[str, np.ndarray | int]:
    """Generate scene ``index`` deterministically."""
    rng = np.random.default_rng([seed, index])
    names = list(CLASSES)[:num_classes]
    # Regions: a Voronoi partition; the dominant class owns most seeds.
    n_seeds = int(rng.integers(3, 7))
    dominant = int(rng.integers(num_classes))
    others = rng.choice([c for c in range(num_classes) if c != dominant], size=2, replace=False)
    seed_classes = np.where(rng.random(n_seeds) < 0.6, dominant, rng.choice(others, size=n_seeds))
    seed_classes[0] = dominant
    points = rng.uniform(0, size, size=(n_seeds, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    dist = (yy[None] - points[:, 0, None, None]) ** 2 + (xx[None] - points[:, 1, None, None]) ** 2
    mask = seed_classes[dist.argmin(0)].astype(np.int64)

    image = np.empty((len(OPTICAL_BANDS) + len(SAR_BANDS), size, size), np.float32)
    for c in np.unique(mask):
        optical, sar, texture = CLASSES[names[c]]
        pattern = _texture(texture, size, rng)
        where = mask == c
        for b, value in enumerate(optical):
            image[b][where] = (value * (1.0 + 0.15 * pattern))[where]
        for b, value in enumerate(sar):
            image[len(optical) + b][where] = (value + 1.5 * pattern)[where]

    n_opt = len(OPTICAL_BANDS)
    gain = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # illumination / sun angle
    haze = rng.uniform(0, 600)  # additive path radiance, stronger in the visible
    haze_per_band = haze * np.array([1.0, 0.8, 0.6, 0.3, 0.1, 0.05], np.float32)[:, None, None]
    image[:n_opt] = image[:n_opt] * gain + haze_per_band
    image[:n_opt] += rng.normal(0, 60, size=image[:n_opt].shape)
    image[n_opt:] += rng.uniform(-4.0, 4.0)  # incidence-angle offset
    image[n_opt:] += rng.normal(0, 1.5, size=image[n_opt:].shape)  # speckle, in dB
    image[:n_opt] = np.clip(image[:n_opt], 1.0, None)

    counts = np.bincount(mask.ravel(), minlength=num_classes)
    labels = (counts >= 0.1 * mask.size).astype(np.float32)
    return {"image": image, "label": int(counts.argmax()), "labels": labels, "mask": mask}


class SyntheticScenes(Dataset):
    """A map-style dataset of synthetic SAR-optical scenes (see the module docstring).

    ``split`` only changes the seed: ``train``, ``knn_train`` and ``knn_val`` never share scenes.
    """

    SPLIT_OFFSETS = {"train": 0, "knn_train": 1_000_003, "knn_val": 2_000_003}

    def __init__(self, num_samples: int, image_size: int = 64, num_classes: int = 8, seed: int = 0,
                 split: str = "train") -> None:
        if not 2 <= num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in [2, {len(CLASSES)}], got {num_classes}")
        if split not in self.SPLIT_OFFSETS:
            raise ValueError(f"split must be one of {list(self.SPLIT_OFFSETS)}, got {split!r}")
        self.num_samples = num_samples
        self.image_size = image_size
        self.num_classes = num_classes
        self.seed = seed + self.SPLIT_OFFSETS[split]
        self.card = synthetic_card(num_classes)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        scene = make_scene(index, self.seed, self.image_size, self.num_classes)
        return {
            "image": torch.from_numpy(scene["image"]),
            "label": torch.tensor(scene["label"]),
            "labels": torch.from_numpy(scene["labels"]),
            "mask": torch.from_numpy(scene["mask"]),
        }
