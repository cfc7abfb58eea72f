"""GeoTIFF band reading and the one resampling method used to put all bands on the 10 m grid.

Resampling choice: **bilinear, ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)``**, applied to float32 values. With ``align_corners=False`` a coarse pixel
and the block of fine pixels it covers share the same footprint, so a 20 m or 60 m band stays
co-registered with the 10 m bands over the patch extent (edges are clamped, not padded). Bilinear
never overshoots the input range (bicubic would, giving negative reflectances), and it is simple
enough that anyone can recompute it exactly from the source files. Every source uses this
function; the dataset cards record the same choice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geodino.data.sources import PatchError

RESAMPLING = "bilinear (torch.nn.functional.interpolate, align_corners=False), float32"


def read_band(
    path: Path, patch: str, expected_shape: tuple[int, int] | None = None, as_float: bool = True
) -> np.ndarray:
    """Read band 1 of a single-band GeoTIFF, or raise :class:`PatchError` naming the file.

    With ``as_float`` the values are converted to float32, exactly (uint16 DN and float32 dB both
    fit); nothing is rounded. Otherwise the stored dtype is kept (e.g. uint16 class codes).
    """
    import rasterio
    from rasterio.errors import RasterioError

    if not path.is_file():
        raise PatchError(patch, str(path), "file is missing")
    try:
        with rasterio.open(path) as src:
            array = src.read(1)
    except (RasterioError, OSError) as err:
        raise PatchError(patch, str(path), f"unreadable GeoTIFF: {err}") from None
    if expected_shape is not None and array.shape != tuple(expected_shape):
        raise PatchError(patch, str(path), f"shape {array.shape}, expected {tuple(expected_shape)}")
    if not as_float:
        return array
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise PatchError(patch, str(path), f"{bad} non-finite pixel(s) (NaN or inf)")
    return array


def grid_of(path: Path, patch: str) -> dict:
    """CRS (EPSG string when it has one, else WKT) and affine transform of a band's pixel grid."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            crs = src.crs.to_string() if src.crs is not None else None
            return {"crs": crs, "transform": [float(v) for v in tuple(src.transform)[:6]]}
    except (RasterioError, OSError) as err:
        raise PatchError(patch, str(path), f"unreadable GeoTIFF: {err}") from None


def resample_to(bands: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    """Bring every band to ``size`` (H, W) with the module's bilinear method; bands already at that
    size are returned untouched (so 10 m bands and SAR are bit-exact copies of the source)."""
    import torch
    import torch.nn.functional as F

    out = list(bands)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, band in enumerate(bands):
        if band.shape != tuple(size):
            by_shape.setdefault(band.shape, []).append(i)
    # Bands sharing a native size go through one interpolate call.
    for indices in by_shape.values():
        stack = torch.from_numpy(np.stack([bands[i] for i in indices]))[None]
        resized = F.interpolate(stack, size=tuple(size), mode="bilinear", align_corners=False)[0]
        for j, i in enumerate(indices):
            out[i] = resized[j].numpy()
    return out
