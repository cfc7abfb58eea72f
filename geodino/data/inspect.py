"""Look at shards: counts, bands, shapes, label frequencies, per-band ranges and a preview picture.

The preview shows each sample as an optical true-colour composite (B04/B03/B02, each channel
stretched between the 2nd and 98th percentile of its typical pixels, so that clouds saturate
rather than darken the scene) and, when SAR is present, a false-colour composite (R = VV, G = VH,
B = VV − VH in dB, stretched the same way); RGB datasets show the images as they decode for
training. Segmentation pictures and attention maps use the same composites.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from geodino.data.card import CardError, DatasetCard
from geodino.data.labelled import label_class_names
from geodino.data.shards.format import card_spec, expand_shards, image_array
from geodino.data.shards.read import iter_samples
from geodino.data.stats import BandMoments
from geodino.utils import save_figure


def _card(urls: list[str]) -> DatasetCard | None:
    try:
        return DatasetCard.beside_shards(urls[0])
    except CardError:
        return None


def inspect_shards(
    urls: str | Sequence[str], *, max_samples: int | None = None, keep: int = 8, progress: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One pass over the shards: a JSON-ready report and the first ``keep`` decoded samples."""
    from tqdm import tqdm

    paths = expand_shards(urls)
    card = _card(paths)
    counts: dict[str, Counter] = {}  # per image-level label: how many samples carry each class
    splits: Counter = Counter()
    shapes: Counter = Counter()
    mask_pixels: Counter = Counter()
    moments = BandMoments()
    low = high = None
    bands: list[str] = []
    dtype = ""
    kept: list[dict[str, Any]] = []
    n = 0
    for sample in tqdm(iter_samples(paths, card_spec(card) if card else None), unit="sample", desc="inspect", disable=not progress):
        if max_samples is not None and n >= max_samples:
            break
        n += 1
        meta = sample["meta"]
        bands = meta.get("bands", bands)
        splits[meta.get("split", "?")] += 1
        dtype = "jpeg" if isinstance(sample["image"], (bytes, bytearray)) else str(sample["image"].dtype)
        array = image_array(sample["image"]).astype(np.float64)
        shapes[tuple(array.shape)] += 1
        moments.update(array)
        lo, hi = array.min(axis=(1, 2)), array.max(axis=(1, 2))
        low = lo if low is None else np.minimum(low, lo)
        high = hi if high is None else np.maximum(high, hi)
        for key, value in sample.items():
            if key == "label":
                counts.setdefault(key, Counter())[value] += 1
            elif isinstance(value, np.ndarray) and value.ndim == 1:  # multi-hot: labels19, labels43, ...
                counts.setdefault(key, Counter()).update(int(i) for i in np.flatnonzero(value))
        if "mask" in sample:
            values, freq = np.unique(sample["mask"], return_counts=True)
            mask_pixels.update(dict(zip(values.tolist(), freq.tolist())))
        if len(kept) < keep:
            kept.append(sample)
    if n == 0:
        raise ValueError(f"no samples in {len(paths)} shard(s)")

    def named(key: str, counter: Counter) -> dict[str, int]:
        labels = label_class_names(card, key)
        return {(labels[i] if i < len(labels) else str(i)): c for i, c in sorted(counter.items())}

    report: dict[str, Any] = {
        "shards": len(paths),
        "samples": n,
        "splits": dict(sorted(splits.items())),
        "bands": bands,
        "shape": list(shapes.most_common(1)[0][0]) if len(shapes) == 1 else None,
        "shapes": {"x".join(map(str, s)): c for s, c in shapes.most_common(10)},  # photos vary
        "dtype": dtype,
        "band_stats": {b: {"min": float(low[i]), "mean": float(moments.mean[i]), "max": float(high[i])}
                       for i, b in enumerate(bands or [str(i) for i in range(len(low))])},
    }
    for key, counter in counts.items():
        if counter:
            report[f"{key}_frequency"] = named(key, counter)
    if mask_pixels:
        classes = card.classes if card is not None else []
        report["mask_pixels"] = {("no class" if v == 255 else classes[v] if v < len(classes) else str(v)): c
                                 for v, c in sorted(mask_pixels.items())}
    return report, kept


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text for a terminal."""
    lines = [f"shards: {report['shards']}   samples: {report['samples']}   splits: {report['splits']}",
             f"shape: {report['shape'] or report['shapes']}   dtype: {report['dtype']}",
             f"{'band':<6} {'min':>12} {'mean':>12} {'max':>12}"]
    for band, s in report["band_stats"].items():
        lines.append(f"{band:<6} {s['min']:>12.4g} {s['mean']:>12.4g} {s['max']:>12.4g}")
    for key in [k for k in report if k.endswith("_frequency")] + ["mask_pixels"]:
        if key in report:
            lines.append(f"{key}:")
            lines += [f"  {count:>8}  {name}" for name, count in report[key].items()]
    return "\n".join(lines)


def stretch(channels: np.ndarray, low: float = 2, high: float = 98, spread: float = 3.0) -> np.ndarray:
    """[C,H,W] → [H,W,C] in [0,1], each channel of this image linearly stretched between two
    percentiles of its typical pixels: those within ``spread`` robust standard deviations (1.4826
    median absolute deviations) of its median.

    That is what keeps a cloud from turning the scene black: when bright clouds cover more than
    ``100 - high`` % of the image, the ``high`` percentile of all pixels is a cloud value and the
    land is squeezed into the bottom of the range; of the typical pixels, it is the land's own, and
    the clouds saturate to white. A scene without outliers keeps all its pixels, so nothing changes.
    """
    out = np.empty(channels.shape[1:] + channels.shape[:1], dtype=np.float32)
    for i, c in enumerate(channels):
        finite = c[np.isfinite(c)]
        if finite.size == 0:
            out[..., i] = 0.0
            continue
        median = np.median(finite)
        sigma = 1.4826 * np.median(np.abs(finite - median))
        typical = finite[np.abs(finite - median) <= spread * sigma] if sigma > 0 else finite
        lo, hi = np.percentile(typical if typical.size else finite, [low, high])
        out[..., i] = np.nan_to_num(np.clip((c - lo) / (hi - lo if hi > lo else 1.0), 0, 1))
    return out


def composites(sample: dict[str, Any]) -> dict[str, np.ndarray]:
    """The pictures of one sample by name (``optical``, ``sar`` or ``rgb``), [H,W,3] in [0,1]."""
    image = sample["image"]
    if isinstance(image, (bytes, bytearray)):
        return {"rgb": image_array(image).transpose(1, 2, 0)}
    bands = sample["meta"].get("bands", [])
    out = {}
    if {"B04", "B03", "B02"} <= set(bands):
        out["optical"] = stretch(image[[bands.index(b) for b in ("B04", "B03", "B02")]])
    if {"VV", "VH"} <= set(bands):
        vv, vh = image[bands.index("VV")], image[bands.index("VH")]
        out["sar"] = stretch(np.stack([vv, vh, vv - vh]))
    if not out:  # unknown sensor: the first three bands (or one band as grey)
        idx = list(range(min(3, image.shape[0])))
        out["bands " + ",".join(bands[i] if i < len(bands) else str(i) for i in idx)] = stretch(image[(idx * 3)[:3]])
    return out


def render_preview(samples: list[dict[str, Any]], path: str | Path) -> Path:
    """Save a grid (one column per sample, one row per composite) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pictures = [composites(s) for s in samples]
    rows = list(dict.fromkeys(name for p in pictures for name in p))
    fig, axes = plt.subplots(len(rows), len(samples), figsize=(2.2 * len(samples), 2.4 * len(rows)),
                             squeeze=False)
    for col, (sample, pics) in enumerate(zip(samples, pictures)):
        for row, name in enumerate(rows):
            ax = axes[row][col]
            ax.axis("off")
            if name in pics:
                ax.imshow(pics[name], interpolation="nearest")
            if row == 0:
                ax.set_title(sample["key"][-22:], fontsize=7)
            if col == 0:
                ax.text(-0.05, 0.5, name, transform=ax.transAxes, rotation=90, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return Path(path)
