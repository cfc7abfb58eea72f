import pytest
import torch
import torch.nn as nn

from geodino.models import DINOHead
from geodino.models.head import PrototypeLayer


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


@pytest.mark.parametrize("rows", [4, 20])  # fewer rows than inputs: scaled output; more: scaled weight
def test_prototype_layer_equals_torch_weight_norm_in_value_and_gradient(rows):
    torch.manual_seed(0)
    ours = PrototypeLayer(6, 5, norm_last_layer=False)
    with torch.no_grad():
        ours.weight_g.uniform_(0.5, 2.0)
    linear = nn.Linear(6, 5, bias=False)
    linear.weight.data.copy_(ours.weight_v.data)
    theirs = nn.utils.parametrizations.weight_norm(linear)
    theirs.parametrizations.weight.original0.data.copy_(ours.weight_g.data)
    x = torch.randn(rows, 6)
    torch.testing.assert_close(ours(x), theirs(x))
    (ours(x) ** 2).sum().backward()
    (theirs(x) ** 2).sum().backward()
    torch.testing.assert_close(ours.weight_v.grad, theirs.parametrizations.weight.original1.grad)
    torch.testing.assert_close(ours.weight_g.grad, theirs.parametrizations.weight.original0.grad)
