import torch

from geodino.data.synthetic import CLASSES, SyntheticScenes, synthetic_card


def test_scenes_are_deterministic_and_well_formed():
    ds = SyntheticScenes(8, image_size=24, seed=3)
    a, b = ds[5], SyntheticScenes(8, image_size=24, seed=3)[5]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert a["image"].shape == (8, 24, 24) and a["image"].dtype == torch.float32
    assert torch.isfinite(a["image"]).all()
    counts = torch.bincount(a["mask"].flatten(), minlength=8)
    assert a["label"].item() == counts.argmax().item()
    torch.testing.assert_close(a["labels"], (counts >= 0.1 * 24 * 24).float())
    assert a["image"][6:].max() < 0  # SAR in dB


def test_splits_do_not_share_scenes():
    train = SyntheticScenes(4, 16, split="train")[0]["image"]
    query = SyntheticScenes(4, 16, split="knn_val")[0]["image"]
    assert not torch.equal(train, query)


def test_card_matches_band_order_and_modalities():
    card = synthetic_card()
    assert card.band_names == ["B02", "B03", "B04", "B08", "B11", "B12", "VH", "VV"]
    assert card.modalities == {"s2": [0, 1, 2, 3, 4, 5], "s1": [6, 7]}
    assert card.classes == list(CLASSES)


def test_card_statistics_describe_the_generator():
    images = torch.stack([SyntheticScenes(256, 32)[i]["image"] for i in range(256)]).double()
    card = synthetic_card()
    mean, std = images.mean((0, 2, 3)), images.std((0, 2, 3))
    assert torch.allclose(mean, torch.tensor(card.mean, dtype=torch.float64), rtol=0.15, atol=1.0)
    assert torch.allclose(std, torch.tensor(card.std, dtype=torch.float64), rtol=0.2)


def test_members_of_a_family_share_brightness_and_sar_but_not_shape_or_texture():
    families = {}
    for name, (optical, sar, texture) in CLASSES.items():
        families.setdefault(tuple(sar), []).append((torch.tensor(optical), texture))
    assert len(families) == 4
    for (a, tex_a), (b, tex_b) in families.values():
        assert tex_a != tex_b
        assert abs(a.sum() / b.sum() - 1) < 0.1  # about as bright
        assert (a / a.sum() - b / b.sum()).abs().max() > 0.005  # differently shaped
