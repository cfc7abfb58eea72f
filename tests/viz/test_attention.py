"""Last-block CLS attention recomputed from the qkv weights, and ``geodino attention`` pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geodino.cli import main
from geodino.eval.checkpoint import load_teacher_backbone
from geodino.viz.attention import cls_attention

pytestmark = pytest.mark.usefixtures("one_thread")


def test_weights_reproduce_the_fused_attention(synthetic_checkpoint) -> None:
    backbone, _, _ = load_teacher_backbone(synthetic_checkpoint)
    attn = backbone.model.blocks[-1].attn
    seen = {}
    attn.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    x = torch.randn(2, 8, 40, 32)
    weights = cls_attention(backbone, x)  # [B, heads, h, w]
    assert weights.shape == (2, 3, 5, 4)
    # The full weights of the CLS row, applied to the values, must give the fused module's output.
    tokens = seen["x"]
    qkv = attn.qkv(tokens).reshape(2, tokens.shape[1], 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    cls_row = ((qkv[0] * attn.scale) @ qkv[1].transpose(-2, -1)).softmax(-1)[:, :, 0]  # [B, heads, N]
    torch.testing.assert_close(cls_row[:, :, 1:].reshape(2, 3, 5, 4), weights)
    mixed = (cls_row[:, :, None] @ qkv[2]).squeeze(2).reshape(2, -1)  # heads concatenated
    torch.testing.assert_close(attn.proj(mixed), seen["out"][:, 0], rtol=1e-5, atol=1e-5)


def test_pictures_from_a_geotiff_and_a_shard_sample(synthetic_checkpoint, synthetic_shards, tmp_path, capsys) -> None:
    import rasterio
    from rasterio.transform import Affine

    bands = ["VV", "VH", "B12", "B11", "B08", "B04", "B03", "B02"]  # not the card's order: matched by name
    data = np.random.default_rng(0).uniform(0, 3000, size=(8, 24, 24)).astype(np.float32)
    tif = tmp_path / "scene.tif"
    with rasterio.open(tif, "w", driver="GTiff", height=24, width=24, count=8, dtype="float32", crs="EPSG:32632",
                       transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(data)
        dst.descriptions = tuple(bands)
    assert main(["attention", str(synthetic_checkpoint), str(tif), "--out", str(tmp_path / "a")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["scene_attention.npy", "scene_head0.png", "scene_head1.png", "scene_head2.png",
                     "scene_heads.png", "scene_mean.png"]
    assert np.load(tmp_path / "a" / "scene_attention.npy").shape == (3, 3, 3)
    key = "synthetic_val_0000003"
    assert main(["attention", str(synthetic_checkpoint), f"{synthetic_shards}#{key}", "--size", "48",
                 "--out", str(tmp_path / "b")]) == 0
    assert np.load(tmp_path / "b" / f"{key}_attention.npy").shape == (3, 6, 6)
    assert "mean over a composite" in capsys.readouterr().out


def test_a_scene_number_that_is_not_one_is_named(synthetic_checkpoint, tmp_path, capsys) -> None:
    """synthetic#-1 was an IndexError traceback, synthetic#abc int()'s message without the input."""
    from geodino.cli import main

    for spec in ("synthetic#-1", "synthetic#abc"):
        assert main(["attention", str(synthetic_checkpoint), spec, "--out", str(tmp_path)]) == 2
        assert f"{spec}: synthetic#N takes a scene number N >= 0" in capsys.readouterr().err


def _geotiff(path, descriptions, data=None):
    import rasterio
    from rasterio.transform import Affine

    data = np.random.default_rng(0).uniform(0, 3000, size=(8, 24, 24)).astype(np.float32) if data is None else data
    with rasterio.open(path, "w", driver="GTiff", height=24, width=24, count=8, dtype="float32", crs="EPSG:32632",
                       transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
    return path


@pytest.mark.parametrize("descriptions,message", [
    ([f"X{i}" for i in range(1, 9)], "do not name ['B02', 'B03', 'B04', 'B08', 'B11', 'B12', 'VH', 'VV']"),
    (["VV", "VH", "B12", "B11", "B08", "B04", "B03", "FOO"], "do not name ['B02']"),
])
def test_a_geotiff_whose_band_names_are_not_the_models_is_refused_naming_them(synthetic_checkpoint, tmp_path,
                                                                               capsys, descriptions, message):
    # Such files were read in file order without a word: wrong bands drawn as if right.
    tif = _geotiff(tmp_path / "scene.tif", descriptions)
    assert main(["attention", str(synthetic_checkpoint), str(tif), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(tif) in err, err
    assert not (tmp_path / "a").exists()


def test_a_geotiff_without_band_names_is_read_in_file_order_and_the_log_says_so(synthetic_checkpoint, tmp_path,
                                                                                caplog):
    tif = _geotiff(tmp_path / "plain.tif", None)
    with caplog.at_level("INFO", logger="geodino"):
        assert main(["attention", str(synthetic_checkpoint), str(tif), "--out", str(tmp_path / "a")]) == 0
    assert "has no band descriptions: its 8 bands are read in file order as B02, B03" in caplog.text


def test_a_geotiff_with_non_finite_pixels_is_refused(synthetic_checkpoint, tmp_path, capsys):
    data = np.ones((8, 24, 24), dtype=np.float32)
    data[3, 2, 2] = np.nan
    tif = _geotiff(tmp_path / "nan.tif", None, data)
    assert main(["attention", str(synthetic_checkpoint), str(tif), "--out", str(tmp_path / "a")]) == 2
    assert "1 pixel values are not finite (the first in band B08)" in capsys.readouterr().err
