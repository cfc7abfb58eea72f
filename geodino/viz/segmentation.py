"""Pictures of segmentation results: the input composites (optical, SAR), the ground truth and the
prediction side by side, in one colour per class (ignored pixels black)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from geodino.utils import save_figure  # noqa: E402


def composite(image: np.ndarray, bands: list[str]) -> tuple[str, np.ndarray]:
    """The picture a person would look at first: true colour if the bands allow, else SAR false
    colour, else the first bands (see :func:`geodino.data.inspect.composites`)."""
    return next(iter(all_composites(image, bands).items()))


def all_composites(image: np.ndarray, bands: list[str]) -> dict[str, np.ndarray]:
    """Every picture of ``image`` by name: ``optical`` and ``sar`` when it has both sensors."""
    from geodino.data.inspect import composites

    return composites({"image": np.asarray(image, dtype=np.float32), "meta": {"bands": list(bands)}})


def class_colours(num_classes: int) -> np.ndarray:
    base = plt.get_cmap("tab20" if num_classes > 10 else "tab10")
    return np.array([base(i % base.N)[:3] for i in range(num_classes)], dtype=np.float32)


def colour_mask(mask: np.ndarray, colours: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """``[H, W]`` class map → ``[H, W, 3]`` colours; ignored (or unknown) pixels black."""
    out = np.zeros(mask.shape + (3,), dtype=np.float32)
    valid = (mask != ignore_index) & (mask >= 0) & (mask < len(colours))
    out[valid] = colours[mask[valid]]
    return out


def save_prediction(image: np.ndarray, bands: list[str], target: np.ndarray, prediction: np.ndarray,
                    class_names: list[str], path: str | Path, ignore_index: int = 255, title: str = "") -> Path:
    """One PNG: the input's composites (optical, and SAR when there is SAR) | ground truth |
    prediction, with a legend of the classes present."""
    colours = class_colours(len(class_names))
    inputs = list(all_composites(image, bands).items())
    fig, axes = plt.subplots(1, len(inputs) + 2, figsize=(3.2 * (len(inputs) + 2), 3.6))
    panels = [(picture, name) for name, picture in inputs]
    panels += [(colour_mask(target, colours, ignore_index), "ground truth"),
               (colour_mask(prediction, colours, ignore_index), "prediction")]
    for ax, (pic, label) in zip(axes, panels):
        ax.imshow(pic, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    present = sorted(set(np.unique(target).tolist()) | set(np.unique(prediction).tolist()))
    handles = [Patch(color=colours[c], label=class_names[c]) for c in present if 0 <= c < len(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    save_figure(fig, path, dpi=100)
    return Path(path)

