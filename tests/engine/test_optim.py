import torch
import torch.nn as nn

from geodino.engine.ema import ema_update
from geodino.engine.optim import (
    clip_gradients_global,
    clip_gradients_per_parameter,
    drop_last_layer_gradients,
    param_groups,
    set_hyperparameters,
)
from geodino.models import DINOHead, build_backbone


def test_param_groups_decay_weights_and_pos_embed_but_not_biases_or_norms():
    backbone = build_backbone("vit_tiny_patch16_224", in_chans=3, img_size=32, patch_size=8, depth=1)
    decayed, plain = param_groups(backbone)
    names = {id(p): n for n, p in backbone.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    plain_names = {names[id(p)] for p in plain["params"]}
    assert "model.pos_embed" in decayed_names and "model.cls_token" in decayed_names
    assert "model.blocks.0.attn.qkv.weight" in decayed_names
    assert "model.blocks.0.attn.qkv.bias" in plain_names and "model.blocks.0.norm1.weight" in plain_names
    assert plain["weight_decay"] == 0.0


def test_set_hyperparameters_decays_first_group_only():
    model = nn.Linear(3, 3)
    opt = torch.optim.AdamW(param_groups(model))
    set_hyperparameters(opt, lr=0.1, weight_decay=0.3)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]


def test_per_parameter_clipping_scales_each_gradient_separately():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.3, 0.4])  # norms 5 and 0.5
    norms = clip_gradients_per_parameter([a, b], max_norm=1.0)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.5]))
    torch.testing.assert_close(a.grad, torch.tensor([0.6, 0.8]) * (5 / (5 + 1e-6)))
    torch.testing.assert_close(b.grad, torch.tensor([0.3, 0.4]))  # below the limit: untouched


def test_global_clipping_uses_joint_norm():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0]), torch.tensor([4.0])
    clip_gradients_global([a, b], max_norm=1.0)
    torch.testing.assert_close(torch.cat([a.grad, b.grad]), torch.tensor([0.6, 0.8]), atol=1e-5, rtol=0)


def test_drop_last_layer_gradients():
    head = DINOHead(4, 8, 8, 4, norm_last_layer=False)
    head(torch.randn(2, 4)).sum().backward()
    drop_last_layer_gradients(head)
    assert head.last_layer.weight_v.grad is None and head.last_layer.weight_g.grad is None
    assert head.mlp[0].weight.grad is not None


def test_ema_update():
    teacher, student = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        for p in teacher.parameters():
            p.fill_(1.0)
        for p in student.parameters():
            p.fill_(3.0)
    ema_update(teacher, student, momentum=0.75)
    for p in teacher.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.75 * 1 + 0.25 * 3))
    assert all(p.item() == 3.0 for p in student.parameters() for p in p.flatten())


def test_per_parameter_clipping_launches_the_same_few_ops_for_any_number_of_parameters():
    from torch.profiler import ProfilerActivity, profile

    def top_level_ops(n_layers: int) -> int:
        model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(n_layers)])
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            clip_gradients_per_parameter(model.parameters(), 3.0)
        return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)

    assert top_level_ops(5) == top_level_ops(100) <= 10  # was 2 per parameter (issue 14)
