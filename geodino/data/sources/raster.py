"""Reading single-band GeoTIFFs without losing values, and deciding by georeferencing whether the
bands of one patch cover the same ground.

Readers no longer resample: a band is kept at its stored size and (lossless) dtype, and the shard
decoder (:func:`geodino.data.shards.format.resample_bands`) brings every band onto the dataset's
10 m grid. What a reader must still decide is whether a band belongs to the patch at all. Pixel
counts cannot tell: the archives store BigEarthNet's S2 bands at 120/60/20 px, copies store every
band at 120 px, torchgeo's test data at 2 px. The footprint can: a band is accepted when its CRS
equals the reference band's and its bounds agree within half a 10 m pixel (see
:func:`place_bands`). Bands without georeferencing can only be judged by size.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from geodino.data.shards.format import PatchError

# Half a 10 m pixel: bands of one patch share their extent far more closely than that, while a
# band from a neighbouring patch or a shifted crop is off by at least one pixel.
FOOTPRINT_TOLERANCE_M = 5.0
METRES_PER_DEGREE = 111_320.0  # along a meridian; only to express the tolerance in degrees
# The largest integer below which float32 holds every integer exactly (24-bit significand).
FLOAT32_EXACT_INT = 2 ** 24


@dataclass
class Raster:
    """One band as read: values in a lossless dtype, and the pixel grid they sit on."""

    path: str
    array: np.ndarray  # uint8/uint16/int16 as stored, everything else float32
    crs: Any  # rasterio CRS, or None
    transform: Any  # affine.Affine; identity when the file has no geotransform

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None and not self.transform.is_identity

    @property
    def corners(self) -> tuple[float, ...]:
        """Map coordinates of the first pixel's outer corner and of the last pixel's, in that order."""
        h, w = self.array.shape
        return (*(self.transform @ (0, 0)), *(self.transform @ (w, h)))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        h, w = self.array.shape
        xs, ys = zip(*(self.transform @ corner for corner in ((0, 0), (w, 0), (0, h), (w, h))))
        return min(xs), min(ys), max(xs), max(ys)

    def describe(self) -> str:
        if not self.georeferenced:
            return "no georeferencing"
        crs = self.crs.to_string() or self.crs.to_wkt()
        return f"{crs} bounds ({', '.join(f'{v:.10g}' for v in self.bounds)})"


def band_id(word: str) -> str:
    """A band name in one spelling, as geodino's band lists write it: ``B2``, ``b02`` -> ``B02``;
    ``b8a``, ``B08A`` -> ``B8A``; anything else upper-cased (``vh`` -> ``VH``)."""
    word = word.upper()
    match = re.fullmatch(r"B0*(\d+)(A?)", word)
    if not match:
        return word
    return f"B{int(match.group(1))}A" if match.group(2) else f"B{int(match.group(1)):02d}"


def _band_word(name: str) -> str:
    """The band a file name ends with: ``X_B08A.TIF`` and ``b8a.tif`` -> ``B8A``."""
    return band_id(name.rsplit(".", 1)[0].rsplit("_", 1)[-1])


def missing_reason(path: Path) -> str:
    """Why a file is missing, with the files that look like it (a misnamed copy is common)."""
    if not path.parent.is_dir():
        return f"file is missing (folder {path.parent} does not exist)"
    # "<patch>_B8A.tif" -> any GeoTIFF whose last "_" word names the same band in another
    # spelling or case: "_B08A.tif", "_b8a.TIF", "B8A.tif" without the patch name.
    # Other files: anything ending as it does ("<patch>_labels_metadata.json").
    band, suffix = _band_word(path.name), "_" + path.name.rsplit("_", 1)[1] if "_" in path.name else path.name
    similar = sorted(p.name for p in path.parent.iterdir() if p.name.endswith(suffix) or (
        p.suffix.lower() in (".tif", ".tiff") and _band_word(p.name) == band))
    if similar:
        return f"file is missing; the folder holds {', '.join(similar)} instead (misnamed?)"
    return "file is missing"


def lossless(array: np.ndarray, patch: str, path: str) -> np.ndarray:
    """``array`` in a dtype the shard format stores, without changing any value.

    uint8/uint16/int16 stay as they are; int8 and bool widen to int16/uint8; other integers
    become float32 when every value is below 2**24 in magnitude (else :class:`PatchError`);
    floats become float32 (float64 rounds to float32 precision, which is far finer than any
    sensor's). Non-finite values are a :class:`PatchError`: no statistic survives them.
    """
    name = array.dtype.name
    if name in ("uint8", "uint16", "int16", "float32"):
        out = array
    elif name == "bool":
        out = array.astype(np.uint8)
    elif name == "int8":
        out = array.astype(np.int16)
    elif array.dtype.kind in "iu":
        if array.size:
            low, high = int(array.min()), int(array.max())
            if max(abs(low), abs(high)) > FLOAT32_EXACT_INT:
                raise PatchError(patch, path, f"{name} values reach {high if abs(high) >= abs(low) else low}, "
                                              f"beyond 2^24, which float32 cannot hold exactly")
        out = array.astype(np.float32)
    elif array.dtype.kind == "f":
        with np.errstate(over="ignore"):
            out = array.astype(np.float32)
        if not np.isfinite(out).all() and np.isfinite(array).all():
            raise PatchError(patch, path, f"{name} values beyond the float32 range")
    else:
        raise PatchError(patch, path, f"unsupported pixel type {name}")
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).sum())
        raise PatchError(patch, path, f"{bad} non-finite pixel(s) (NaN or inf)")
    return out


def read_band(path: str | Path, patch: str) -> Raster:
    """The one band of a GeoTIFF with its georeferencing, values kept exactly (:func:`lossless`),
    or, when the file declares a scale or offset (GDAL's way of storing dB x 100 as int16), the
    physical values ``stored * scale + offset`` as float32.

    A missing or unreadable file, one with several bands, one with pixels at its declared nodata
    value, or one whose values cannot be kept, is a :class:`PatchError` naming the file (so the
    patch is rejected with that reason, counted, never trained on with fill values).
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    path = Path(path)
    if not path.is_file():
        raise PatchError(patch, str(path), missing_reason(path))
    try:
        with warnings.catch_warnings():
            # Files without a geotransform are legitimate here; place_bands judges them by size.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.count != 1:
                    raise PatchError(patch, str(path), f"holds {src.count} bands; one band per file is expected")
                array, crs, transform = src.read(1), src.crs, src.transform
                nodata, scale, offset = src.nodata, src.scales[0], src.offsets[0]
    except (RasterioError, OSError) as err:
        raise PatchError(patch, str(path), f"unreadable GeoTIFF: {err}") from None
    if nodata is not None:
        hidden = int(np.isnan(array).sum()) if np.isnan(nodata) else int((array == nodata).sum())
        if hidden:
            raise PatchError(patch, str(path), f"{hidden} pixel(s) hold the file's nodata value {nodata:g}")
    array = lossless(array, patch, str(path))
    if scale != 1 or offset != 0:
        array = lossless(array.astype(np.float64) * scale + offset, patch, str(path))
    return Raster(str(path), array, crs, transform)


def _tolerance(crs: Any, metres: float) -> float:
    """``metres`` in the units of ``crs``."""
    if crs.is_geographic:
        return metres / METRES_PER_DEGREE
    from rasterio.errors import CRSError

    try:
        factor = float(crs.linear_units_factor[1])
    except (CRSError, TypeError, ValueError, IndexError):  # no linear unit stated: assume metres
        factor = 1.0
    return metres / factor


def _divides(size: tuple[int, int], grid: tuple[int, int]) -> bool:
    return all(s > 0 and g % s == 0 for s, g in zip(size, grid))


def place_bands(
    bands: Sequence[tuple[str, Raster]],
    reference: Raster,
    grid: tuple[int, int],
    patch: str,
    tolerance_m: float = FOOTPRINT_TOLERANCE_M,
) -> list[tuple[str, np.ndarray]]:
    """Check that every band covers the reference band's footprint; ``(name, array)`` pairs to group.

    - both georeferenced: accepted whatever the band's stored size when the CRS is the same and
      each bound is within ``tolerance_m`` of the reference's; otherwise a :class:`PatchError`
      naming the band file and both footprints;
    - either without georeferencing (no CRS, or an identity transform): nothing says where the
      band lies, so it is accepted only when its size equals the grid or divides it evenly (a
      coarser band of the same extent), else a :class:`PatchError`.
    """
    placed = []
    for name, band in bands:
        if band is not reference:
            if reference.georeferenced and band.georeferenced:
                tol = _tolerance(reference.crs, tolerance_m)
                # Ordered corners, not bounds: a band stored south-up, mirrored or transposed
                # covers the same bounds, but its rows would land upside down or sideways.
                same = band.crs == reference.crs and all(
                    abs(a - b) <= tol for a, b in zip(band.corners, reference.corners))
                if not same:
                    raise PatchError(patch, band.path,
                                     f"footprint of {name} ({band.describe()}) disagrees with the reference band "
                                     f"{Path(reference.path).name} ({reference.describe()}) by more than "
                                     f"{tolerance_m:g} m")
            elif not _divides(band.array.shape, grid):
                lacking = "no georeferencing" if not band.georeferenced else "a reference without georeferencing"
                raise PatchError(patch, band.path,
                                 f"{name} is {band.array.shape[0]}x{band.array.shape[1]} px with {lacking} to place "
                                 f"it by ({band.describe()}; reference {reference.describe()}), and that size does "
                                 f"not divide the {grid[0]}x{grid[1]} grid")
        placed.append((name, band.array))
    if not reference.georeferenced and not _divides(reference.array.shape, grid):
        raise PatchError(patch, reference.path,
                         f"reference band is {reference.array.shape[0]}x{reference.array.shape[1]} px without "
                         f"georeferencing, which does not divide the {grid[0]}x{grid[1]} grid")
    return placed


def grid_georef(reference: Raster, grid: tuple[int, int]) -> dict[str, Any]:
    """``crs`` and ``transform`` (6 affine coefficients) of the ``grid`` that covers the reference
    band's footprint: the reference's own transform when it is stored at the grid's size, else
    scaled to the grid's pixel count. Both None when the reference has no georeferencing."""
    if not reference.georeferenced:
        return {"crs": None, "transform": None}
    from affine import Affine

    h, w = reference.array.shape
    transform = reference.transform
    if (h, w) != tuple(grid):
        transform = transform @ Affine.scale(w / grid[1], h / grid[0])
    crs = reference.crs.to_string() or reference.crs.to_wkt()
    return {"crs": crs, "transform": [float(v) for v in tuple(transform)[:6]]}
