"""Self-attention of the CLS token in the last block of a ViT, per head, as pictures (DINO's Fig. 1).

timm computes attention with fused scaled-dot-product kernels that never materialise the weights,
so they are recomputed here: a forward pre-hook on the last block's attention module captures its
input (the normed tokens), and ``softmax(q·kᵀ · scale)`` follows from that module's own ``qkv``
projection (and q/k norms). Nothing in timm is modified.

Inputs can be a GeoTIFF (bands matched to the card by their descriptions, else taken in order),
a shard sample (``SHARDS#KEY``) or a synthetic scene (``synthetic#INDEX``); any channel count.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from geodino.data.card import DatasetCard
from geodino.models.backbone import Backbone

log = logging.getLogger("geodino")


@torch.no_grad()
def cls_attention(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """Attention of the CLS token to every patch in the last block: ``[B, heads, h, w]`` (each
    head's weights over the patches; the weights on prefix tokens are left out)."""
    if not backbone.is_vit:
        raise ValueError("attention maps need a ViT backbone")
    model = backbone.model
    attn = model.blocks[-1].attn
    if not hasattr(attn, "qkv") or not hasattr(attn, "num_heads"):
        raise ValueError(f"the last block's attention ({type(attn).__name__}) has no fused qkv projection")
    captured: dict[str, torch.Tensor] = {}

    def keep_input(module: torch.nn.Module, args: tuple) -> None:
        captured["tokens"] = args[0]

    handle = attn.register_forward_pre_hook(keep_input)
    try:
        model.forward_features(images)
    finally:
        handle.remove()
    tokens = captured["tokens"]
    b, n, _ = tokens.shape
    head_dim = getattr(attn, "head_dim", tokens.shape[-1] // attn.num_heads)
    qkv = attn.qkv(tokens).reshape(b, n, 3, attn.num_heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # [B, heads, N, N]
    n_prefix = model.num_prefix_tokens
    p = backbone.patch_size
    grid = (images.shape[-2] // p, images.shape[-1] // p)
    return weights[:, :, 0, n_prefix:].reshape(b, attn.num_heads, *grid)


# -- inputs --------------------------------------------------------------------------------------
def read_geotiff(path: str | Path, card: DatasetCard) -> np.ndarray:
    """A GeoTIFF as float32 ``[C, H, W]`` in the card's band order. A file whose bands carry
    descriptions must name every band of the card (they are matched by name, in any order); one
    without descriptions is read in file order, and the log says so. Non-finite pixels are refused:
    they would make every attention weight NaN."""
    import rasterio

    with rasterio.open(path) as src:
        data = src.read().astype(np.float32)
        names = [d or "" for d in src.descriptions]
    if set(card.band_names) <= set(names):
        data = data[[names.index(b) for b in card.band_names]]
    elif any(names):
        missing = [b for b in card.band_names if b not in names]
        raise ValueError(f"{path}: its band descriptions {names} do not name {missing}, which the model takes "
                         f"({card.band_names}); describe the bands so, or remove the descriptions to read them "
                         "in file order")
    elif data.shape[0] != card.num_bands:
        raise ValueError(f"{path} has {data.shape[0]} bands without descriptions; the model takes "
                         f"{card.num_bands}: {card.band_names}")
    else:
        log.info("%s has no band descriptions: its %d bands are read in file order as %s", path, data.shape[0],
                 ", ".join(card.band_names))
    bad = ~np.isfinite(data)
    if bad.any():
        band = card.band_names[int(np.argmax(bad.any(axis=(1, 2))))]
        raise ValueError(f"{path}: {int(bad.sum())} pixel values are not finite (the first in band {band}); "
                         "fill them (nodata) before drawing attention")
    return data


def read_shard_sample(spec: str, card: DatasetCard) -> np.ndarray:
    from geodino.data.shards.format import expand_shards
    from geodino.data.shards.read import iter_samples

    shards, key = spec.rsplit("#", 1)
    for sample in iter_samples(expand_shards(shards)):
        if sample["key"] == key:
            bands = sample["meta"].get("bands", card.band_names)
            if list(bands) != card.band_names:
                raise ValueError(f"sample {key} holds bands {bands}, the model takes {card.band_names}")
            return np.asarray(sample["image"], dtype=np.float32)
    raise KeyError(f"no sample {key!r} in {shards}")


def read_input(spec: str, card: DatasetCard, cfg: dict[str, Any]) -> tuple[np.ndarray, str]:
    """``(image [C, H, W] raw values, a name for the output files)``."""
    if spec.startswith("synthetic#"):
        from geodino.data.synthetic import SyntheticScenes

        data = cfg.get("data", {})
        text = spec.split("#", 1)[1]
        if not text.isdigit():
            raise ValueError(f"{spec}: synthetic#N takes a scene number N >= 0")
        index = int(text)
        scenes = SyntheticScenes(index + 1, data.get("image_size", 64), data.get("num_classes", 8),
                                 seed=cfg.get("run", {}).get("seed", 0), split="knn_val")
        return scenes[index]["image"].numpy(), f"synthetic_{index}"
    if "#" in spec and not Path(spec).exists():
        return read_shard_sample(spec, card), spec.rsplit("#", 1)[1]
    if Path(spec).suffix.lower() in (".tif", ".tiff"):
        return read_geotiff(spec, card), Path(spec).stem
    raise ValueError(f"input {spec!r}: expected a GeoTIFF, SHARDS#KEY or synthetic#INDEX")


def model_size(height: int, width: int, patch: int, size: int | None) -> tuple[int, int]:
    """The input size: ``size`` if given, else the image's, rounded to whole patches."""
    if size:
        return size, size
    return max(patch, round(height / patch) * patch), max(patch, round(width / patch) * patch)


# -- pictures ------------------------------------------------------------------------------------
def save_attention_maps(image: np.ndarray, card: DatasetCard, attention: torch.Tensor, out_dir: str | Path,
                        name: str) -> dict[str, Any]:
    """Per-head PNGs, a grid of all heads, and the head-mean overlaid on a composite of ``image``;
    plus the maps as ``.npy``. ``attention`` is ``[heads, h, w]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geodino.utils import save_figure
    from geodino.viz.segmentation import composite

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    height, width = image.shape[-2:]
    # Nearest upsampling: each patch keeps one value, as the model sees it.
    maps = F.interpolate(attention[None].float(), size=(height, width), mode="nearest")[0].numpy()
    heads = maps.shape[0]
    written: dict[str, Any] = {"heads": []}

    def save(fig: Any, path: Path) -> None:
        save_figure(fig, path, dpi=100, bbox_inches="tight")

    for h in range(heads):
        fig, ax = plt.subplots(figsize=(3, 3))
        ax.imshow(maps[h], cmap="inferno", interpolation="nearest")
        ax.set_title(f"head {h}", fontsize=9)
        ax.axis("off")
        path = out / f"{name}_head{h}.png"
        save(fig, path)
        written["heads"].append(str(path))

    cols = min(heads, 6)
    rows = -(-heads // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < heads:
            ax.imshow(maps[i], cmap="inferno", interpolation="nearest")
            ax.set_title(f"head {i}", fontsize=8)
    written["grid"] = str(out / f"{name}_heads.png")
    save(fig, Path(written["grid"]))

    label, picture = composite(image, card.band_names)
    mean = maps.mean(0)
    mean = (mean - mean.min()) / (np.ptp(mean) or 1.0)
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
    axes[0].imshow(picture, interpolation="nearest")
    axes[0].set_title(label, fontsize=9)
    axes[1].imshow(picture, interpolation="nearest")
    axes[1].imshow(mean, cmap="inferno", alpha=0.6, interpolation="nearest")
    axes[1].set_title(f"mean CLS attention over {heads} heads", fontsize=9)
    for ax in axes:
        ax.axis("off")
    written["mean_overlay"] = str(out / f"{name}_mean.png")
    save(fig, Path(written["mean_overlay"]))
    np.save(out / f"{name}_attention.npy", attention.float().numpy())
    written["array"] = str(out / f"{name}_attention.npy")
    return written


def attention_maps(checkpoint: str | Path, spec: str, out_dir: str | Path, size: int | None = None,
                   card: DatasetCard | str | None = None) -> dict[str, Any]:
    """Read ``spec``, run the checkpoint's teacher and draw its last-block CLS attention."""
    from geodino.eval.checkpoint import load_teacher_backbone
    from geodino.eval.features import standardise

    backbone, card, cfg = load_teacher_backbone(checkpoint, card)
    if size:
        backbone.check_input_size(size, "--size")
    image, name = read_input(spec, card, cfg)
    x = standardise(torch.from_numpy(image)[None].float(), card)
    target = model_size(*x.shape[-2:], backbone.patch_size or 16, size)
    if tuple(x.shape[-2:]) != target:
        x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=True)
    attention = cls_attention(backbone, x)[0]
    return save_attention_maps(image, card, attention, out_dir, name)
