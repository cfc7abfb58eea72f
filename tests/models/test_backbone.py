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


def test_zero_rate_dropouts_are_removed_and_the_outputs_stay_the_same():
    """timm puts nn.Dropout(0) in every block: each is still one op per forward (a kernel launch on
    a GPU) that computes nothing (issue 14). Rates above 0 stay."""
    import timm

    from geodino.models.backbone import NoDropout, remove_zero_dropout

    backbone = build_backbone("vit_tiny_patch16_224", in_chans=4, img_size=32, patch_size=8, depth=2)
    modules = list(backbone.modules())
    assert not any(type(m) is torch.nn.Dropout for m in modules)
    assert sum(isinstance(m, NoDropout) for m in modules) >= 8
    torch.manual_seed(0)
    plain = timm.create_model("vit_tiny_patch16_224", num_classes=0, in_chans=4, img_size=32, patch_size=8, depth=2,
                              dynamic_img_size=True)
    backbone.model.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4, 32, 32)
    plain.train(), backbone.train()
    torch.testing.assert_close(backbone(x).cls, plain.forward_features(x)[:, 0], atol=1e-6, rtol=0)
    kept = timm.create_model("vit_tiny_patch16_224", num_classes=0, depth=1, proj_drop_rate=0.1)
    assert remove_zero_dropout(kept) > 0
    assert any(type(m) is torch.nn.Dropout and m.p == 0.1 for m in kept.modules())


def test_every_resizable_timm_vit_gets_the_recipes_depth_and_patch_size_whatever_its_name() -> None:
    """``test_vit`` and ``flexivit_small`` are timm VisionTransformers whose names do not start with
    ``vit_``: the depth, patch size and crop resizing of the recipe used to be dropped for them
    without a word (a 6-block model trained where 1 was asked for)."""
    for arch in ("test_vit", "flexivit_small", "deit3_small_patch16_224", "eva02_tiny_patch14_224"):
        backbone = build_backbone(arch, in_chans=4, img_size=32, patch_size=16, depth=1)
        assert len(backbone.model.blocks) == 1, arch
        assert backbone.patch_size == 16, arch
        for size in (32, 16):  # global and local crops through one model
            assert backbone(torch.randn(2, 4, size, size)).grid == (size // 16, size // 16), arch


def test_depth_or_patch_size_on_a_model_that_cannot_take_them_is_an_error_naming_the_key() -> None:
    import pytest

    with pytest.raises(ValueError, match=r"model\.depth=2.*resnet18"):
        build_backbone("resnet18", in_chans=3, depth=2)
    with pytest.raises(ValueError, match=r"model\.patch_size=8.*resnet18"):
        build_backbone("resnet18", in_chans=3, patch_size=8)
    # ViTs timm cannot resize per crop (fixed position tables): refused with the families that can.
    for arch in ("beit_base_patch16_224", "vit_relpos_small_patch16_224"):
        with pytest.raises(ValueError, match=rf"model\.arch={arch}.*vision_transformer.*eva"):
            build_backbone(arch, in_chans=3, img_size=32, patch_size=16, depth=1)


def test_masked_patches_work_for_eva_vits_too_and_equal_the_hand_masked_embedding() -> None:
    """Masking swaps the patch embedding's output before the position embedding; done through the
    patch embedding itself it holds for every timm family (Eva's tokens carry rotary positions that
    the hand-built path did not)."""
    import timm

    for arch in ("vit_tiny_patch16_224", "eva02_tiny_patch14_224"):
        backbone = build_backbone(arch, in_chans=3, img_size=32, patch_size=16, depth=1).eval()
        x = torch.randn(2, 3, 32, 32)
        mask = torch.zeros(2, 2, 2, dtype=torch.bool)
        mask[0, 0, 1] = mask[1, 1, 0] = True
        token = torch.randn(backbone.embed_dim)
        got = backbone(x, mask=mask, mask_token=token)
        m = backbone.model
        emb = m.patch_embed(x)
        emb[mask] = token
        original = m.patch_embed.forward
        m.patch_embed.forward = lambda _x: emb  # timm's own forward_features on the masked embedding
        try:
            want = m.forward_features(x)
        finally:
            m.patch_embed.forward = original
        torch.testing.assert_close(got.cls, want[:, 0])
        torch.testing.assert_close(got.patches, want[:, m.num_prefix_tokens:])
        assert not torch.allclose(got.cls, backbone(x).cls), arch  # the mask changed something
    del timm


def test_an_input_that_is_not_whole_patches_is_an_error_naming_both_sizes() -> None:
    import pytest

    backbone = build_backbone("vit_tiny_patch16_224", in_chans=3, img_size=32, patch_size=16, depth=1)
    for call in (lambda x: backbone(x), lambda x: backbone(x, cls_only=True), lambda x: backbone.last_blocks_cls(x, 1)):
        with pytest.raises(ValueError, match=r"an input of 20x32 px is not a whole number of this model's 16-px patches"):
            call(torch.randn(1, 3, 20, 32))


def test_crop_sizes_that_are_not_whole_patches_are_refused_naming_the_key() -> None:
    import pytest

    from geodino.config import load_config
    from geodino.objectives.networks import build_network

    tiny = ["model.arch=vit_tiny_patch16_224", "model.depth=1", "model.out_dim=16", "model.hidden_dim=16",
            "model.bottleneck_dim=8", "augment.global_size=32", "augment.local_size=16"]
    with pytest.raises(ValueError, match=r"augment\.global_size=32 is not a multiple of the patch size 7"):
        build_network(load_config(None, [*tiny, "model.patch_size=7"]), 3, 0.0)
    with pytest.raises(ValueError, match=r"augment\.local_size=20 is not a multiple of the patch size 16 "
                                         r"\(model\.patch_size, or vit_tiny_patch16_224's own when 0\)"):
        build_network(load_config(None, [*tiny, "model.patch_size=16", "augment.local_size=20"]), 3, 0.0)


def test_a_backbone_built_for_one_input_size_names_itself_and_the_size() -> None:
    """A Swin took 224-px inputs only: timm's assertion reached the user as a traceback."""
    import pytest

    backbone = build_backbone("swin_tiny_patch4_window7_224", in_chans=3)
    with pytest.raises(ValueError, match=r"SwinTransformer cannot take a 32x32 input \(Input height \(32\) doesn't "
                                         r"match model \(224\)\.\); multi-crop needs a backbone of any input size"):
        backbone(torch.randn(1, 3, 32, 32))
