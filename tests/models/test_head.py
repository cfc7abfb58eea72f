import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from geodino.models import DINOHead
from geodino.models.head import PrototypeLayer, _WeightNormedLinear, l2_normalize


def test_shapes_and_cosine_range():
    head = DINOHead(192, out_dim=512, hidden_dim=64, bottleneck_dim=32)
    out = head(torch.randn(10, 192) * 50)
    assert out.shape == (10, 512)
    assert out.abs().max() <= 1.0 + 1e-5  # cosines: unit bottleneck, unit-norm prototypes


def test_layer_structure_and_init():
    head = DINOHead(16, out_dim=8, hidden_dim=32, bottleneck_dim=4, nlayers=3)
    kinds = [type(m).__name__ for m in head.mlp]
    assert kinds == ["Linear", "GELU", "Linear", "GELU", "Linear"]
    assert all(torch.all(m.bias == 0) for m in head.mlp if isinstance(m, nn.Linear))
    assert head.mlp[0].weight.std() < 0.03
    assert torch.all(head.last_layer.weight_g == 1)
    assert not head.last_layer.weight_g.requires_grad  # norm_last_layer=True freezes the magnitude
    assert DINOHead(16, 8, 32, 4, use_bn=True).mlp[1].__class__ is nn.BatchNorm1d
    assert DINOHead(16, 8, 32, 4, norm_last_layer=False).last_layer.weight_g.requires_grad


def _twin_layers(in_dim=6, out_dim=5):
    """Our prototype layer and torch's weight_norm Linear holding the same g and v."""
    ours = PrototypeLayer(in_dim, out_dim, norm_last_layer=False)
    with torch.no_grad():
        ours.weight_g.uniform_(0.5, 2.0)
    linear = nn.Linear(in_dim, out_dim, bias=False)
    linear.weight.data.copy_(ours.weight_v.data)
    theirs = nn.utils.parametrizations.weight_norm(linear)
    theirs.parametrizations.weight.original0.data.copy_(ours.weight_g.data)
    return ours, theirs


# fewer rows than inputs: scaled output; more: scaled weight; a [B, N, D] token batch
@pytest.mark.parametrize("shape", [(4, 6), (20, 6), (3, 5, 6)])
def test_prototype_layer_equals_torch_weight_norm_in_value_and_gradient(shape):
    torch.manual_seed(0)
    ours, theirs = _twin_layers()
    x = torch.randn(*shape)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.testing.assert_close(ours(x_ours), theirs(x_theirs))
    (ours(x_ours) ** 2).sum().backward()
    (theirs(x_theirs) ** 2).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad)
    torch.testing.assert_close(ours.weight_v.grad, theirs.parametrizations.weight.original1.grad)
    torch.testing.assert_close(ours.weight_g.grad, theirs.parametrizations.weight.original0.grad)


@pytest.mark.parametrize("rows", [3, 9])
def test_prototype_layer_gradient_matches_finite_differences(rows):
    torch.manual_seed(1)
    x = torch.randn(rows, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    g = torch.rand(7, 1, dtype=torch.float64).add(0.5).requires_grad_()
    assert torch.autograd.gradcheck(_WeightNormedLinear.apply, (x, v, g))


def test_prototype_layer_under_bf16_autocast_stays_near_fp32():
    torch.manual_seed(2)
    layer = PrototypeLayer(16, 32, norm_last_layer=False)
    x = torch.randn(4, 16)
    exact = torch.autograd.grad(layer(x).pow(2).sum(), layer.weight_v)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    grad = torch.autograd.grad(out.float().pow(2).sum(), layer.weight_v)[0]
    assert grad.dtype == torch.float32
    # bf16 keeps ~3 significant digits; torch's weight_norm under autocast errs by as much
    assert (grad - exact).abs().max() < 0.01 * exact.abs().max()


@pytest.mark.parametrize("rows", [4, 40])  # fewer rows than the bottleneck: output scaled; more: weight scaled
def test_prototype_logits_are_fp32_and_exact_under_bf16_autocast(rows):
    # Issue 14: fp32 or bf16 depending on the batch size, and off by up to 2e-3 (x25 at tau_t 0.04).
    torch.manual_seed(3)
    layer = PrototypeLayer(16, 64)
    x = F.normalize(torch.randn(rows, 16), dim=-1).bfloat16()  # what the bottleneck gives under autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.float32
    exact = x.double() @ layer.weight.double().t()
    assert (out.double() - exact).abs().max() < 1e-6


def _launches(fn) -> int:
    """aten ops with device work that ``fn`` dispatches (the bench's count; see geodino.bench.host)."""
    from geodino.bench.host import count_ops

    return count_ops(lambda _: fn(), 0)[2]


def test_l2_normalize_equals_torch_in_value_and_gradient_in_fewer_launches():
    torch.manual_seed(4)
    x = torch.randn(7, 5, dtype=torch.float64)
    x[2] = 0.0  # a zero row, and a row under the clamp (|x| < eps): gradient g / eps there
    x[3] *= 1e-14
    x[4] *= 1e-12 / float(x[4].norm())  # exactly at the clamp
    grad = torch.randn(7, 5, dtype=torch.float64)
    ours_x, theirs_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, theirs = l2_normalize(ours_x), F.normalize(theirs_x, dim=-1)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-15)
    ours.backward(grad)
    theirs.backward(grad)
    torch.testing.assert_close(ours_x.grad, theirs_x.grad)
    t = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: l2_normalize(t), (t,))
    with pytest.raises(RuntimeError):  # no second derivative (it would be wrong, not refused)
        torch.autograd.grad(l2_normalize(t).pow(2).sum(), t, create_graph=True)[0].sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the dtype F.normalize gives there too
        y = torch.randn(4, 8).bfloat16()
        assert l2_normalize(y).dtype == F.normalize(y, dim=-1).dtype
    # On a GPU each launch is host time: autograd's graph through F.normalize launches 13 per call.
    z = torch.randn(16, 8, requires_grad=True)
    ours_count = _launches(lambda: l2_normalize(z).sum().backward())
    theirs_count = _launches(lambda: F.normalize(z, dim=-1).sum().backward())
    assert ours_count <= theirs_count - 6, (ours_count, theirs_count)
