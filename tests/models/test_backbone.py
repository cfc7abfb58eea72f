import torch

from geodino.models import DINOHead, MultiCropWrapper, build_backbone


def test_vit_any_channels_and_crop_sizes_return_cls_and_patch_grid():
    backbone = build_backbone("vit_tiny_patch16_224", in_chans=14, img_size=32, patch_size=8, depth=2)
    for h, w in [(32, 32), (16, 16), (24, 40)]:
        out = backbone(torch.randn(2, 14, h, w))
        assert out.cls.shape == (2, 192)
        assert out.grid == (h // 8, w // 8)
        assert out.patches.shape == (2, (h // 8) * (w // 8), 192)


def test_resnet_backbone_gives_pooled_embedding():
    backbone = build_backbone("resnet18", in_chans=5)
    out = backbone(torch.randn(2, 5, 64, 64))
    assert out.cls.shape == (2, backbone.embed_dim)


def test_multicrop_wrapper_groups_sizes_and_keeps_view_order():
    backbone = build_backbone("vit_tiny_patch16_224", in_chans=3, img_size=32, patch_size=8, depth=1)
    net = MultiCropWrapper(backbone, DINOHead(192, 16, 32, 8)).eval()
    views = [torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32), torch.randn(2, 3, 16, 16)]
    out = net(views)
    assert [o.shape for o in out.logits] == [(2, 16)] * 3
    for view, logits in zip(views, out.logits):  # batching by size must not mix views up
        torch.testing.assert_close(net.head(backbone(view).cls), logits, atol=1e-5, rtol=1e-4)


def test_last_blocks_cls_concatenates():
    backbone = build_backbone("vit_tiny_patch16_224", in_chans=3, img_size=32, patch_size=8, depth=4)
    assert backbone.last_blocks_cls(torch.randn(2, 3, 32, 32), 4).shape == (2, 4 * 192)


def test_an_unknown_arch_suggests_names_of_its_own_family() -> None:
    import pytest

    with pytest.raises(ValueError, match=r"cannot build backbone 'vit_tiny_patch16'.*closest timm names: \[.*"
                                         r"'vit_tiny_patch16_224'") as err:
        build_backbone("vit_tiny_patch16", in_chans=3)
    assert "convit" not in str(err.value) and "crossvit" not in str(err.value)
