"""Composites stretched per image keep the land visible under a cloud; segmentation panels show
every sensor."""

from __future__ import annotations

import numpy as np

from geodino.data.inspect import stretch


def test_a_large_cloud_saturates_instead_of_darkening_the_land() -> None:
    rng = np.random.default_rng(0)
    land = rng.uniform(300, 1500, size=(3, 64, 64))  # reflectance-like values of a cloud-free scene
    cloudy = land.copy()
    cloudy[:, :16] = 9000  # a bright cloud over a quarter of the scene
    clear = stretch(land)
    picture = stretch(cloudy)
    visible = picture[16:]  # the land under the clear sky
    assert visible.mean() > 0.35 and visible.std() > 0.2  # its contrast survives (the 98th percentile
    assert (picture[:16] == 1.0).all()  # alone would sit in the cloud and leave the land below 0.15)
    assert abs(clear.mean() - visible.mean()) < 0.1
    assert np.isfinite(stretch(np.full((3, 4, 4), np.nan))).all()


def test_segmentation_panels_show_optical_and_sar(tmp_path, monkeypatch) -> None:
    from geodino.viz import segmentation

    figures = []
    monkeypatch.setattr(segmentation, "save_figure", lambda fig, path, **kw: figures.append(fig))
    bands = ["B02", "B03", "B04", "B08", "VH", "VV"]
    image = np.random.default_rng(1).uniform(0, 1, size=(6, 8, 8)).astype(np.float32)
    mask = np.zeros((8, 8), dtype=np.int64)
    segmentation.save_prediction(image, bands, mask, mask, ["a", "b"], tmp_path / "p.png")
    assert [ax.get_title() for ax in figures[0].axes] == ["optical", "sar", "ground truth", "prediction"]
