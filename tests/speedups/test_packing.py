"""Crops of several sizes through the blocks as one token table give what one pass per size gives."""

import pytest
import torch

from geodino.models import build_backbone
from geodino.speedups.onednn_linear import use_onednn_linears
from geodino.speedups.packing import Layout, SampleDrops, supports_packing


def _vit(**kwargs):
    torch.manual_seed(0)
    return build_backbone("vit_tiny_patch16_224", in_chans=4, img_size=32, patch_size=8, depth=3, **kwargs)


def _crops(masked: bool = False):
    g = torch.Generator().manual_seed(3)
    crops = [torch.randn(4, 4, 32, 32, generator=g), torch.randn(6, 4, 16, 16, generator=g)]
    masks = [None, None]
    if masked:
        masks = [torch.rand(4, 4, 4, generator=g) < 0.4, torch.rand(6, 2, 2, generator=g) < 0.4]
    return crops, masks


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-6))


def _run(backbone, pack: bool, cls_only: bool, masked: bool):
    backbone.zero_grad()
    crops, masks = _crops(masked)
    token = torch.nn.Parameter(torch.full((192,), 0.5)) if masked else None
    outs = backbone.forward_sizes(crops, masks, mask_token=token, cls_only=cls_only, pack=pack)
    loss = sum(o.cls.pow(2).sum() + (o.patches.sin().sum() if o.patches is not None else 0) for o in outs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in backbone.named_parameters() if p.grad is not None}
    if token is not None:
        grads["mask_token"] = token.grad.clone()
    return outs, grads


@pytest.mark.parametrize("onednn", [False, True])
@pytest.mark.parametrize(("cls_only", "masked"), [(False, False), (True, False), (False, True)])
def test_packed_sizes_equal_one_pass_per_size(cls_only, masked, onednn):
    backbone = _vit().train()
    if onednn:  # the trained networks' linears (a no-op where oneDNN loses on this machine)
        use_onednn_linears(backbone)
    assert backbone._packing_supported()
    (plain, plain_grads), (packed, packed_grads) = (_run(backbone, pack, cls_only, masked) for pack in (False, True))
    for want, got, crop in zip(plain, packed, _crops()[0]):
        assert got.cls.shape == want.cls.shape == (crop.shape[0], 192)
        torch.testing.assert_close(got.cls, want.cls, atol=1e-5, rtol=1e-5)
        assert got.grid == want.grid
        if cls_only:
            assert got.patches is None and want.patches is None
        else:
            torch.testing.assert_close(got.patches, want.patches, atol=1e-5, rtol=1e-5)
    assert packed_grads.keys() == plain_grads.keys()
    for name, want in plain_grads.items():
        assert _relative_error(packed_grads[name], want) < 1e-4, name


def test_stochastic_depth_keeps_or_drops_whole_samples():
    blocks = _vit(drop_path_rate=0.5).model.blocks.train()
    drop = blocks[-1].drop_path1  # rate 0.5 in the last block
    layout = Layout(((3, 5), (4, 2)))
    torch.manual_seed(0)
    drops = SampleDrops([blocks[0].drop_path1, drop, blocks[1].drop_path2], layout, torch.device("cpu"))
    kept = drops(drop, torch.ones(3 * 5 + 4 * 2, 7))
    per_sample = kept.split([5, 5, 5, 2, 2, 2, 2])
    scale = 1.0 / (1.0 - drop.drop_prob)
    values = []
    for rows in per_sample:  # one value per sample, over all its rows and channels
        assert rows.unique().numel() == 1
        values.append(float(rows[0, 0]))
    assert all(v == 0.0 or v == pytest.approx(scale) for v in values)
    assert 0.0 in values and max(values) == pytest.approx(scale)  # seed 0 draws both
    assert drops(blocks[0].drop_path1, torch.ones(23, 7)).eq(1).all()  # the first block's rate is 0
    in_bf16 = drops(drop, torch.ones(23, 7, dtype=torch.bfloat16))  # the same draw, in the input's dtype
    assert in_bf16.dtype == torch.bfloat16 and torch.equal(in_bf16, kept.bfloat16())
    ones = torch.ones(23, 7)
    assert drops(blocks[-1].drop_path2, ones) is ones  # a layer it was not given: passed through
    blocks.eval()
    assert SampleDrops([drop], layout, torch.device("cpu"))(drop, torch.ones(23, 7)).eq(1).all()


def test_stochastic_depth_statistics_match_timm():
    """Over many draws each sample is kept with the block's probability, and the mean is kept."""
    drop = _vit(drop_path_rate=0.5).model.blocks[-1].drop_path2.train()
    layout = Layout(((64, 3), (128, 1)))
    torch.manual_seed(1)
    out = torch.stack([SampleDrops([drop], layout, torch.device("cpu"))(drop, torch.ones(64 * 3 + 128, 1))
                       for _ in range(50)])
    assert abs(float(out.gt(0).float().mean()) - (1 - drop.drop_prob)) < 0.02
    assert abs(float(out.mean()) - 1.0) < 0.05


def test_packing_trains_like_one_pass_per_size_with_stochastic_depth():
    """With stochastic depth the two paths draw differently, but a packed backbone still trains:
    it gives finite outputs and gradients to every parameter one pass per size reaches."""
    backbone = _vit(drop_path_rate=0.3).train()
    _, plain_grads = _run(backbone, False, False, False)
    packed, packed_grads = _run(backbone, True, False, False)
    assert packed_grads.keys() == plain_grads.keys()
    assert all(g.isfinite().all() for g in packed_grads.values())
    assert all(o.cls.isfinite().all() for o in packed)


def test_blocks_packing_does_not_cover_run_one_pass_per_size(monkeypatch):
    backbone = _vit()
    assert all(supports_packing(b) for b in backbone.model.blocks)
    monkeypatch.setenv("GEODINO_PACKED", "0")
    assert not backbone._packing_supported()
    monkeypatch.setenv("GEODINO_PACKED", "1")
    monkeypatch.setenv("GEODINO_SPEEDUPS", "off")
    assert not backbone._packing_supported()
    monkeypatch.delenv("GEODINO_SPEEDUPS")
    backbone.model.set_grad_checkpointing(True)
    assert not backbone._packing_supported()
    eva = build_backbone("eva02_tiny_patch14_224", in_chans=3, img_size=28)  # rotary positions per grid
    assert not eva._packing_supported()
    outs = eva.forward_sizes([torch.randn(2, 3, 28, 28), torch.randn(3, 3, 14, 14)], [None, None])
    assert [o.cls.shape[0] for o in outs] == [2, 3]


def test_packing_launches_fewer_ops():
    """The point of it: one launch per per-token layer instead of one per crop size."""
    from geodino.bench.host import count_ops

    backbone = _vit().train()
    counts = {}
    for pack in (False, True):
        counts[pack] = count_ops(lambda _k, pack=pack: _run(backbone, pack, False, False), 0)[2]
    assert counts[True] < 0.8 * counts[False], counts


def test_a_compiled_backbone_runs_its_compiled_per_size_paths():
    """``train.compile`` compiles the per-size forward; packing would run around it."""
    from geodino.engine.build import compile_backbone
    from geodino.models import DINOHead, MultiCropWrapper

    net = MultiCropWrapper(_vit(), DINOHead(192, 16, 32, 8))
    assert net.pack_crop_sizes
    compile_backbone(net)  # lazy: nothing is compiled until called
    assert not net.pack_crop_sizes


@pytest.mark.parametrize("variant", [
    dict(reg_tokens=4), dict(class_token=False, global_pool="avg"), dict(qkv_bias=False, init_values=1e-2),
    dict(qk_norm=True), dict(no_embed_class=True),
])
def test_packing_holds_for_timm_vit_variants(variant):
    """Register tokens, no class token, layer scale, QK norm, position table without the class
    token: the packed forward equals one pass per size."""
    import timm

    from geodino.models.backbone import Backbone

    torch.manual_seed(0)
    backbone = Backbone(timm.create_model("vit_tiny_patch16_224", num_classes=0, in_chans=4, img_size=32,
                                          patch_size=8, depth=2, dynamic_img_size=True, **variant)).train()
    assert backbone._packing_supported()
    for cls_only in (False, True):
        (plain, plain_grads), (packed, packed_grads) = (_run(backbone, pack, cls_only, False) for pack in (False, True))
        for want, got in zip(plain, packed):
            torch.testing.assert_close(got.cls, want.cls, atol=1e-5, rtol=1e-5)
            if want.patches is not None:
                torch.testing.assert_close(got.patches, want.patches, atol=1e-5, rtol=1e-5)
        for name, want in plain_grads.items():
            assert _relative_error(packed_grads[name], want) < 1e-4, name


def test_residual_add_after_stochastic_depth_equals_multiply_then_add_in_fewer_launches():
    from geodino.bench.host import count_ops

    blocks = _vit(drop_path_rate=0.1).model.blocks.train()
    drop = blocks[-1].drop_path1  # kept rows scaled by 1 / 0.9
    layout = Layout(((3, 5), (4, 2)))
    torch.manual_seed(0)
    drops = SampleDrops([drop], layout, torch.device("cpu"))
    for dtype in (torch.float32, torch.bfloat16):  # the branch in autocast's dtype, the residual in fp32
        x = torch.randn(23, 7, requires_grad=True)
        y = torch.randn(23, 7).to(dtype).requires_grad_()
        fused = drops.add(x, drop, y)
        plain = x + drops(drop, y)
        assert fused.dtype == plain.dtype == torch.float32
        torch.testing.assert_close(fused, plain, atol=1e-6 if dtype == torch.float32 else 2e-2, rtol=0)
        grad = torch.randn(23, 7)
        got = torch.autograd.grad(fused, (x, y), grad)
        want = torch.autograd.grad(plain, (x, y), grad)
        for g, w in zip(got, want):  # bf16: one rounding of the scaled gradient here, two there
            assert g.dtype == w.dtype
            torch.testing.assert_close(g, w, atol=0, rtol=0 if dtype == torch.float32 else 1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # under autocast too: fp32 residual, bf16 branch
        x, y = torch.randn(23, 7), torch.randn(23, 7).bfloat16()
        fused, plain = drops.add(x, drop, y), x + drops(drop, y)
        assert fused.dtype == plain.dtype == torch.float32
        torch.testing.assert_close(fused, plain, atol=2e-2, rtol=0)
    x, y = torch.randn(23, 7), torch.randn(23, 7)
    assert torch.equal(drops.add(x, blocks[0].drop_path1, y), x + y)  # a layer it was not given: a plain add
    x, y = x.requires_grad_(), y.requires_grad_()
    fused = count_ops(lambda _: drops.add(x, drop, y).sum().backward(), 0)[2]
    plain = count_ops(lambda _: (x + drops(drop, y)).sum().backward(), 0)[2]
    assert fused < plain, (fused, plain)  # at least one per layer: 24 launches in a ViT-S/16 step


def test_packing_uses_only_what_older_timm_attention_has():
    """timm before 1.0.23 has no ``Attention.attn_dim`` (pyproject allows >= 1.0.20): the packed
    and CLS-only blocks work out the width from the heads. (timm's own forward, the plain pass,
    reads it in the installed version, so it goes only for the packed one.)"""
    backbone = _vit().train()
    for cls_only in (False, True):
        plain, _ = _run(backbone, False, cls_only, False)
        widths = [block.attn.__dict__.pop("attn_dim") for block in backbone.model.blocks]
        try:
            packed, _ = _run(backbone, True, cls_only, False)
        finally:
            for block, width in zip(backbone.model.blocks, widths):
                block.attn.attn_dim = width
        for want, got in zip(plain, packed):
            torch.testing.assert_close(got.cls, want.cls, atol=1e-5, rtol=1e-5)
