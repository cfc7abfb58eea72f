"""The band reader keeps values exactly and places bands by footprint (raster module on its own)."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import Affine

from geodino.data.sources import PatchError
from geodino.data.sources.raster import Raster, grid_georef, lossless, place_bands, read_band


@pytest.mark.parametrize("values,dtype,stored", [
    ([0, 255], np.uint8, "uint8"),
    ([0, 65535], np.uint16, "uint16"),
    ([-32768, 32767], np.int16, "int16"),
    ([-128, 127], np.int8, "int16"),
    ([0, 1], np.bool_, "uint8"),
    ([-(2 ** 24), 2 ** 24], np.int32, "float32"),
    ([0, 2 ** 24], np.uint32, "float32"),
    ([-(2 ** 24), 2 ** 24], np.int64, "float32"),
    ([-12.25, 3.5], np.float16, "float32"),
    ([-12.25, 0.1], np.float32, "float32"),
    ([-12.25, 0.1], np.float64, "float32"),
])
def test_lossless_keeps_every_value(values, dtype, stored) -> None:
    array = np.array(values, dtype=dtype).reshape(1, 2)
    out = lossless(array, "p", "f.tif")
    assert out.dtype.name == stored
    if array.dtype != np.float64:
        np.testing.assert_array_equal(out.astype(np.float64), array.astype(np.float64))
    else:
        np.testing.assert_array_equal(out, array.astype(np.float32))


@pytest.mark.parametrize("array,reason", [
    (np.array([[2 ** 24 + 1]], np.int32), r"int32 values reach 16777217, beyond 2\^24"),
    (np.array([[-(2 ** 31)]], np.int64), r"int64 values reach -2147483648"),
    (np.array([[1e300]]), "float64 values beyond the float32 range"),
    (np.array([[np.nan, 1.0]], np.float32), r"1 non-finite pixel\(s\)"),
    (np.array([[np.inf]]), r"1 non-finite pixel"),
    (np.array([[1 + 2j]]), "unsupported pixel type complex128"),
])
def test_values_that_cannot_be_kept_name_the_file(array, reason) -> None:
    with pytest.raises(PatchError, match=f"p: band.tif: {reason}"):
        lossless(array, "p", "band.tif")


def test_missing_file_lists_what_looks_like_it(tmp_path) -> None:
    (tmp_path / "patch_41_VH.tif").write_bytes(b"")
    with pytest.raises(PatchError, match=r"file is missing; the folder holds patch_41_VH.tif instead \(misnamed\?\)"):
        read_band(tmp_path / "patch_VH.tif", "p")
    with pytest.raises(PatchError, match="folder .* does not exist"):
        read_band(tmp_path / "nope" / "patch_VH.tif", "p")
    # Other spellings, cases and extensions of the band are pointed at too (they got a plain "missing").
    for name in ("patch_B08A.tif", "patch_b8a.TIF", "B8A.tif"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(PatchError, match=r"holds B8A.tif, patch_B08A.tif, patch_b8a.TIF instead \(misnamed\?\)"):
        read_band(tmp_path / "patch_B8A.tif", "p")


def _raster(shape, crs="EPSG:32633", transform=Affine(10.0, 0, 500000.0, 0, -10.0, 6000000.0), name="b.tif"):
    return Raster(name, np.zeros(shape, np.uint16), CRS.from_string(crs) if crs else None,
                  transform if crs else Affine.identity())


def test_footprints_decide_not_pixel_counts() -> None:
    ref = _raster((120, 120), name="B02.tif")
    # 20 m and 60 m bands, and a copy's odd 7 px band, all over the same 1.2 km: accepted.
    coarse = _raster((60, 60), transform=Affine(20.0, 0, 500000.0, 0, -20.0, 6000000.0))
    odd = _raster((7, 7), transform=Affine(1200 / 7, 0, 500000.0, 0, -1200 / 7, 6000000.0))
    placed = place_bands([("B02", ref), ("B05", coarse), ("X", odd)], ref, (120, 120), "p")
    assert [name for name, _ in placed] == ["B02", "B05", "X"]
    shifted = _raster((120, 120), transform=Affine(10.0, 0, 500010.0, 0, -10.0, 6000000.0), name="B03.tif")
    with pytest.raises(PatchError, match=r"B03.tif: footprint of B03 \(EPSG:32633 bounds \(500010, 5998800, "
                                         r"501210, 6000000\)\) disagrees with the reference band B02.tif"):
        place_bands([("B02", ref), ("B03", shifted)], ref, (120, 120), "p")


def test_geographic_footprints_use_the_tolerance_in_degrees() -> None:
    ref = _raster((2, 2), crs="EPSG:4326", transform=Affine(0.01, 0, 10.0, 0, -0.01, 50.0))
    near = _raster((4, 4), crs="EPSG:4326", transform=Affine(0.005, 0, 10.00003, 0, -0.005, 50.0))  # ~3 m
    far = _raster((4, 4), crs="EPSG:4326", transform=Affine(0.005, 0, 10.0001, 0, -0.005, 50.0))  # ~11 m
    place_bands([("a", ref), ("b", near)], ref, (120, 120), "p")
    with pytest.raises(PatchError, match="disagrees"):
        place_bands([("a", ref), ("b", far)], ref, (120, 120), "p")


def test_without_georeferencing_the_size_must_divide_the_grid() -> None:
    ref = _raster((120, 120), crs=None, name="B02.tif")
    place_bands([("B02", ref), ("B05", _raster((60, 60), crs=None)), ("B01", _raster((20, 20)))], ref, (120, 120), "p")
    with pytest.raises(PatchError, match="B05 is 50x50 px with no georeferencing"):
        place_bands([("B02", ref), ("B05", _raster((50, 50), crs=None))], ref, (120, 120), "p")
    with pytest.raises(PatchError, match="reference band is 7x7 px without georeferencing"):
        small = _raster((7, 7), crs=None)
        place_bands([("B02", small)], small, (120, 120), "p")
    assert grid_georef(ref, (120, 120)) == {"crs": None, "transform": None}


def test_grid_transform_covers_the_reference_footprint() -> None:
    ref = _raster((2, 2), transform=Affine(600.0, 0, 500000.0, 0, -600.0, 6000000.0))
    assert grid_georef(ref, (120, 120)) == {"crs": "EPSG:32633",
                                            "transform": [10.0, 0.0, 500000.0, 0.0, -10.0, 6000000.0]}


def test_a_flipped_or_transposed_band_is_rejected_though_its_bounds_match() -> None:
    """Same bounds, other pixel order: its rows would land upside down (or sideways) unnoticed."""
    reference = _raster((120, 120), name="B02.tif")
    south_up = _raster((60, 60), transform=Affine(20.0, 0, 500000.0, 0, 20.0, 6000000.0 - 1200.0), name="B05.tif")
    mirrored = _raster((60, 60), transform=Affine(-20.0, 0, 501200.0, 0, -20.0, 6000000.0), name="B06.tif")
    same = _raster((60, 60), transform=Affine(20.0, 0, 500000.0, 0, -20.0, 6000000.0), name="B07.tif")
    assert south_up.bounds == reference.bounds == mirrored.bounds
    for band in (south_up, mirrored):
        with pytest.raises(PatchError, match=f"footprint of {band.path[:3]}"):
            place_bands([("B02", reference), (band.path[:3], band)], reference, (120, 120), "p")
    assert len(place_bands([("B02", reference), ("B07", same)], reference, (120, 120), "p")) == 2


def _tiff(path, bands, dtype="uint16", nodata=None, scale=None, offset=None):
    import rasterio

    data = np.asarray(bands, dtype=dtype)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=dtype, nodata=nodata) as dst:
        dst.write(data)
        if scale is not None:
            dst.scales, dst.offsets = (scale,) * data.shape[0], (offset or 0.0,) * data.shape[0]
    return path


def test_a_band_file_with_several_bands_or_nodata_pixels_is_named_and_not_read(tmp_path) -> None:
    """Found by probing real-world variants: band 1 of a 2-band file was taken without a word, and
    pixels at the file's declared nodata value (-9999 dB, 0 reflectance) went into the shards and
    their statistics."""
    from geodino.data.sources.raster import read_band

    with pytest.raises(PatchError, match=r"holds 2 bands; one band per file is expected"):
        read_band(_tiff(tmp_path / "two.tif", [[[11, 11]], [[22, 22]]]), "p")
    with pytest.raises(PatchError, match=r"1 pixel\(s\) hold the file's nodata value -9999"):
        read_band(_tiff(tmp_path / "vh.tif", [[[-9999.0, -15.0]]], "float32", nodata=-9999), "p")
    with pytest.raises(PatchError, match=r"2 pixel\(s\) hold the file's nodata value nan"):
        read_band(_tiff(tmp_path / "nan.tif", [[[np.nan, np.nan, 1.0]]], "float32", nodata=float("nan")), "p")
    clean = read_band(_tiff(tmp_path / "ok.tif", [[[1, 2]]], nodata=0), "p")  # declared, but absent: fine
    assert clean.array.tolist() == [[1, 2]]


def test_a_declared_scale_and_offset_give_the_physical_values(tmp_path) -> None:
    """dB x 100 stored as int16 with scale 0.01: the shard held -1500 instead of -15 dB."""
    from geodino.data.sources.raster import read_band

    raster = read_band(_tiff(tmp_path / "db.tif", [[[-1500, -725]]], "int16", scale=0.01, offset=0.5), "p")
    np.testing.assert_allclose(raster.array, [[-14.5, -6.75]], rtol=0, atol=1e-6)
    assert raster.array.dtype == np.float32
