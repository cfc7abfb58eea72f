"""Per-band mean and standard deviation of shards, in one streaming pass, written into the card.

Samples are grouped into batches; each batch's per-band count, mean and sum of squared deviations
are computed in float64 and merged into the running totals with Chan et al.'s parallel update, so
the result does not suffer the cancellation of the naive ``E[x²] − E[x]²`` on large raw values
(S2 digital numbers reach 10⁴, hundreds of millions of pixels). The standard deviation is the
population one (ddof = 0) over all pixels of all samples. JPEG images are measured as decoded
RGB in [0, 1] at their stored size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from geodino.data.card import CardError, DatasetCard
from geodino.data.shards.format import CARD_FILE, card_spec, expand_shards, image_array, is_remote
from geodino.data.shards.read import iter_samples


@dataclass
class BandMoments:
    """Running per-band count, mean and sum of squared deviations (M2)."""

    count: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        """Add a batch ``[N, C, H, W]`` (or ``[C, H, W]``) of values."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 3:
            x = x[None]
        flat = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)
        n = flat.shape[1]
        mean = flat.mean(axis=1)
        m2 = ((flat - mean[:, None]) ** 2).sum(axis=1)
        self.merge(BandMoments(n, mean, m2))

    def merge(self, other: BandMoments) -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean.copy(), other.m2.copy()
            return
        if other.mean.shape != self.mean.shape:
            raise ValueError(f"cannot merge moments of {other.mean.shape[0]} bands into {self.mean.shape[0]}")
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.count)


@dataclass
class BandStatistics:
    bands: list[str]
    mean: list[float]
    std: list[float]
    samples: int
    pixels_per_band: int
    shards: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"bands": self.bands, "mean": self.mean, "std": self.std, "samples": self.samples,
                "pixels_per_band": self.pixels_per_band, "shards": len(self.shards)}


def compute_band_statistics(
    urls: str | Sequence[str], *, batch_size: int = 64, max_samples: int | None = None, progress: bool = True
) -> BandStatistics:
    """Per-band mean/std over the given shards (folder, tar, brace pattern or list)."""
    from tqdm import tqdm

    paths = expand_shards(urls)
    try:
        spec = card_spec(DatasetCard.beside_shards(paths[0]))
    except CardError:
        spec = None  # no card to hold the samples against: their own meta.json still is
    moments = BandMoments()
    bands: list[str] | None = None
    batch: list[np.ndarray] = []
    samples = 0

    def flush() -> None:
        shapes = {b.shape for b in batch}
        if len(shapes) == 1:
            moments.update(np.stack(batch))
        else:  # images of several sizes: each is its own batch
            for b in batch:
                moments.update(b)
        batch.clear()

    for sample in tqdm(iter_samples(paths, spec), unit="sample", desc="stats", disable=not progress):
        if max_samples is not None and samples >= max_samples:
            break
        sample_bands = sample["meta"].get("bands")
        if bands is None:
            bands = sample_bands
        elif sample_bands != bands:
            raise ValueError(f"sample {sample['key']} has bands {sample_bands}, earlier samples {bands}")
        batch.append(image_array(sample["image"]))
        samples += 1
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if samples == 0:
        raise ValueError(f"no samples in {len(paths)} shard(s)")
    return BandStatistics(bands=list(bands or []), mean=[float(m) for m in moments.mean],
                          std=[float(s) for s in moments.std], samples=samples,
                          pixels_per_band=moments.count, shards=paths)


def write_statistics(stats: BandStatistics, card_path: str | Path, template: str | Path | None = None) -> DatasetCard:
    """Put ``stats`` into the card at ``card_path`` (created from ``template`` if it does not exist)."""
    card_path = Path(card_path)
    source = card_path if card_path.is_file() else template
    if source is None or not Path(source).is_file():
        raise FileNotFoundError(f"no dataset card at {card_path} to write statistics into")
    card = DatasetCard.load(source)
    if card.band_names != stats.bands:
        raise ValueError(f"{source}: card bands {card.band_names} differ from the shards' {stats.bands}")
    card = card.with_statistics(stats.mean, stats.std)
    card.extra["statistics_from"] = {"samples": stats.samples, "pixels_per_band": stats.pixels_per_band,
                                     "shards": len(stats.shards)}
    card.save(card_path)
    return card


def default_card_path(urls: str | Sequence[str]) -> Path:
    first = expand_shards(urls)[0]
    if is_remote(first):
        raise ValueError(f"{first} is remote: name the card to write the statistics into with --card")
    return Path(first).parent / CARD_FILE
