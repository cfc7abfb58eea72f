"""ImageNet-style class folders: listing, the map-style dataset and the shared decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geodino.data.sources import PatchError
from geodino.data.sources import imagefolder


def test_listing_and_keys(image_folder) -> None:
    items, classes = imagefolder.list_images(image_folder)
    assert classes == ["n01440764", "n01443537"]
    assert len(items) == 6 and [i.label for i in items].count(1) == 3
    assert all("." not in i.key and "/" not in i.key for i in items)


def test_jpeg_bytes_are_kept_and_other_formats_converted(image_folder) -> None:
    items, _ = imagefolder.list_images(image_folder)
    jpeg = next(i for i in items if i.path.endswith(".JPEG"))
    parts = imagefolder.read_item(jpeg)
    assert parts.image == Path(jpeg.path).read_bytes() and not parts.meta["reencoded"]
    png = next(i for i in items if i.path.endswith(".png"))
    parts = imagefolder.read_item(png)
    assert parts.image.startswith(imagefolder.JPEG_MAGIC) and parts.meta["reencoded"]


def test_corrupt_image_is_rejected(image_folder) -> None:
    root = image_folder
    (root / "n01440764" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    items, _ = imagefolder.list_images(root)
    with pytest.raises(PatchError, match="broken.jpg"):
        imagefolder.read_item(next(i for i in items if "broken" in i.key))


def test_dataset_resizes_shorter_side_and_centre_crops(image_folder) -> None:
    ds = imagefolder.ImageFolderDataset(image_folder, image_size=32)
    sample = ds[0]
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype.is_floating_point
    assert 0.0 <= sample["image"].min() and sample["image"].max() <= 1.0 and sample["label"] == 0
    # The same decode from bytes (as when streaming image.jpg from shards).
    from_bytes = imagefolder.load_rgb(Path(ds.items[0].path).read_bytes(), 32)
    assert (from_bytes == sample["image"]).all()


def test_training_batches_travel_as_8_bit_and_become_the_float_decode(image_folder) -> None:
    import torch

    from geodino.data.batches import batch_images
    from geodino.data.shards.format import RGB8_KEY

    floats = imagefolder.ImageFolderDataset(image_folder, image_size=24)
    eights = imagefolder.ImageFolderDataset(image_folder, image_size=24, uint8=True)
    batch = torch.utils.data.default_collate([eights[i] for i in range(len(eights))])
    assert batch[RGB8_KEY].dtype == torch.uint8 and batch[RGB8_KEY].shape == (6, 3, 24, 24)
    expected = torch.stack([floats[i]["image"] for i in range(len(floats))])
    assert torch.equal(batch_images(batch, "cpu"), expected)  # bit for bit: the same float32 division


def test_16_bit_png_keeps_its_gradient(tmp_path) -> None:
    from PIL import Image

    from geodino.data.shards.format import image_array

    # A 16-bit greyscale ramp from dark to bright along x, as DEM or scan PNGs come.
    ramp = np.tile(np.linspace(2000, 60000, 64), (32, 1)).astype(np.uint16)
    (tmp_path / "dem").mkdir()
    Image.fromarray(ramp).save(tmp_path / "dem" / "ramp.png")
    with Image.open(tmp_path / "dem" / "ramp.png") as img:
        assert img.mode.startswith("I")
    (item,), _ = imagefolder.list_images(tmp_path)
    parts = imagefolder.read_item(item)
    assert parts.meta["reencoded"] and parts.image.startswith(imagefolder.JPEG_MAGIC)
    grey = image_array(parts.image).mean(axis=(0, 1))  # per column, in [0, 1]
    np.testing.assert_allclose(grey, ramp[0] / 65535.0, atol=0.02)
    assert grey[-1] - grey[0] > 0.8
    # The map-style dataset decodes the PNG itself the same way (32 px tall: the centre crop keeps
    # columns 16..47, not resized).
    direct = imagefolder.ImageFolderDataset(tmp_path, image_size=32)[0]["image"]
    np.testing.assert_allclose(direct.mean(dim=(0, 1)).numpy(), ramp[0, 16:48] / 65535.0, atol=0.01)


def test_a_float_tiff_and_an_oversized_image_are_rejected_naming_the_file(tmp_path, monkeypatch) -> None:
    """A float32 TIFF became an all-black JPEG, counted as written; one image over PIL's pixel limit
    (DecompressionBombError) stopped the whole conversion."""
    from PIL import Image

    folder = tmp_path / "train" / "cls"
    folder.mkdir(parents=True)
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), mode="F").save(folder / "float.tif")
    Image.new("RGB", (40, 40)).save(folder / "big.png")
    items, _ = imagefolder.list_images(tmp_path / "train")
    by_key = {i.key: i for i in items}
    with pytest.raises(PatchError, match=r"float\.tif.*32-bit float pixels") as err:
        imagefolder.read_item(by_key["cls_float"])
    assert err.value.file.endswith("float.tif")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels is then over twice the limit
    with pytest.raises(PatchError, match=r"unreadable image: .*exceeds limit"):
        imagefolder.read_item(by_key["cls_big"])


def test_files_that_would_share_a_key_are_named_and_non_images_are_counted(tmp_path, caplog) -> None:
    """cat/gray.png beside cat/gray.jpg stopped the conversion with "split 'train' lists 'cat_gray'
    more than once"; .gif and .txt files were left out without a word."""
    import logging

    from PIL import Image

    folder = tmp_path / "train" / "cat"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "gray.png")
    Image.new("RGB", (8, 8)).save(folder / "gray.jpg")
    with pytest.raises(ValueError, match=r"gray\.jpg and .*gray\.png would both be sample 'cat_gray': rename one"):
        imagefolder.list_images(tmp_path / "train")
    (folder / "gray.jpg").unlink()
    Image.new("RGB", (8, 8)).save(folder / "anim.gif")
    (folder / "notes.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="geodino"):
        items, _ = imagefolder.list_images(tmp_path / "train")
    assert [i.key for i in items] == ["cat_gray"]
    assert "2 file(s) that are not" in caplog.text and ".gif: 1" in caplog.text and ".txt: 1" in caplog.text
