"""SelfPatch: the loss against a hand computation, gradients, crop sizes, who trains the aggregator."""

from types import SimpleNamespace

import pytest
import torch

from geodino.config import load_config
from geodino.models.backbone import BackboneOutput
from geodino.objectives import SelfPatchLoss, SelfPatchOutput
from geodino.objectives.neighbours import top_k_neighbours
from geodino.objectives.selfpatch import SelfPatchHeads
from geodino.objectives.networks import build_objectives, build_student_teacher
from tests.engine.runs import TINY
from tests.objectives.hand_values import LN2, UNIFORM, P, Q, logits_for
from tests.objectives.live_memory import peak_tables


def _output(patch_rows, counts, temp, teacher_views=1):
    summaries = [torch.zeros(1, 4) for _ in counts]  # uniform: the summary term is ln 4 per pair
    out = SelfPatchOutput.of(logits_for(patch_rows, temp), counts, summaries)
    return SimpleNamespace(extra={"selfpatch": out}, logits=[torch.zeros(1, 4)] * teacher_views)


def test_loss_and_center_match_hand_computation():
    # One image, crop A with 2 patches, crop B with 1 (e.g. a global and a local crop).
    # Cross-entropies in units of ln 2:
    #   A: teacher uniform vs student P -> 2.25;  teacher P vs student P -> 1.75   => crop mean 2.0
    #   B: teacher P vs student Q -> 0.5*3 + 0.25*3 + 0.125*2 + 0.125*1 = 2.625
    # Crops are averaged: (2.0 + 2.625) / 2 = 2.3125 (a mean over the 3 tokens would give 2.2083).
    # Summary term: one teacher view against the other student crop, both uniform: ln 4 = 2 ln 2.
    teacher = _output([UNIFORM, P, P], [2, 1], 0.04)
    student = _output([P, P, Q], [2, 1], 0.1)
    loss_fn = SelfPatchLoss(out_dim=4, student_temp=0.1)
    loss = loss_fn(student, teacher, teacher_temp=0.04)
    assert abs(loss.item() - (2.3125 + 2.0) * LN2) < 1e-5
    signals = loss_fn.signals()
    assert abs(signals["patch_loss"] - 2.3125 * LN2) < 1e-5 and abs(signals["summary_loss"] - 2 * LN2) < 1e-5
    # Teacher entropy: (H(uniform) + 2 H(P)) / 3 = (2 + 2 * 1.75) / 3 ln 2
    assert abs(signals["teacher_entropy"] - 5.5 / 3 * LN2) < 1e-5
    # The center moves by 0.1 x the mean teacher row, after the loss.
    expected = 0.1 * logits_for([UNIFORM, P, P], 0.04).mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center.center, expected, atol=1e-7, rtol=0)


def test_own_teacher_temperature_overrides_the_schedule():
    teacher, student = _output([P, Q], [1, 1], 0.04), _output([P, Q], [1, 1], 0.1)
    sharp = SelfPatchLoss(out_dim=4, teacher_temp=0.02)(student, teacher, teacher_temp=0.04)
    scheduled = SelfPatchLoss(out_dim=4)(student, teacher, teacher_temp=0.04)
    assert sharp.item() != pytest.approx(scheduled.item())


def _networks(*overrides):
    cfg = load_config(None, [*TINY, "objective.patch=selfpatch", "objective.patch_out_dim=32",
                             "objective.patch_hidden_dim=16", "objective.patch_bottleneck_dim=8", *overrides])
    torch.manual_seed(0)
    student, teacher = build_student_teacher(cfg, in_chans=3)
    return student, teacher, build_objectives(cfg)["selfpatch"]


def test_gradients_reach_the_student_and_its_aggregator_only():
    student, teacher, loss_fn = _networks()
    globals_ = [torch.randn(2, 3, 32, 32) for _ in range(2)]
    locals_ = [torch.randn(2, 3, 16, 16) for _ in range(2)]
    with torch.no_grad():
        teacher_out = teacher(globals_, extra_views=locals_)
    student_out = student(globals_ + locals_)
    loss_fn(student_out, teacher_out, 0.04).backward()
    heads = student.extra_heads["selfpatch"]
    for name, p in heads.named_parameters():
        if p.requires_grad and "weight_g" not in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert student.backbone.model.patch_embed.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher_out.extra["selfpatch"].patch_logits.requires_grad


def test_teacher_heads_every_crop_of_any_size():
    student, teacher, loss_fn = _networks()
    # Non-square global (4x3 patches) and local (2x3 patches) crops.
    globals_ = [torch.randn(2, 3, 32, 24) for _ in range(2)]
    locals_ = [torch.randn(2, 3, 16, 24) for _ in range(3)]
    with torch.no_grad():
        teacher_out = teacher(globals_, extra_views=locals_)
    student_out = student(globals_ + locals_)
    s, t = student_out.extra["selfpatch"], teacher_out.extra["selfpatch"]
    assert s.patch_counts == t.patch_counts == [2 * 12] * 2 + [2 * 6] * 3
    assert s.patch_logits.shape == t.patch_logits.shape == (2 * 24 + 3 * 12, 32)
    assert len(teacher_out.logits) == 2 and len(teacher_out.features) == 5
    assert torch.isfinite(loss_fn(student_out, teacher_out, 0.04))


def test_loss_refuses_a_teacher_that_did_not_see_the_local_crops():
    student, teacher, loss_fn = _networks()
    globals_ = [torch.randn(2, 3, 32, 32) for _ in range(2)]
    with torch.no_grad():
        teacher_out = teacher(globals_)  # no extra_views
    student_out = student(globals_ + [torch.randn(2, 3, 16, 16)])
    with pytest.raises(ValueError, match="teacher's view"):
        loss_fn(student_out, teacher_out, 0.04)


def _heads_one_crop_at_a_time(heads, features, role, n_views):
    # The heads' outputs computed the plain way: every crop pooled on its own, every crop's
    # neighbour sets summarised on their own, every row through the patch head.
    agg, rows, summaries = heads.aggregator, [], []
    for i, f in enumerate(features):
        if role == "teacher":
            rows.append(agg.pool_sets(f.patches, *top_k_neighbours(f.patches, f.grid, heads.k)).flatten(0, 1))
        else:
            rows.append(f.patches.flatten(0, 1))
        if role == "student" or i < n_views:
            summaries.append(agg.pool(f.patches))
    return heads.head(torch.cat(rows)), [heads.head(s) for s in summaries]


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_one_pass_heads_equal_summarising_each_crop_alone(role):
    # The heads make every summary of a step in one pass of the aggregator, over crops of two grids
    # (one of them not square) and both kinds of summary; it must not change what they compute.
    torch.manual_seed(0)
    heads = SelfPatchHeads(64, out_dim=32, hidden_dim=16, bottleneck_dim=8, k=3).eval()
    grids = [(4, 3), (4, 3), (2, 2), (2, 2), (2, 2)]
    features = [BackboneOutput(cls=torch.randn(2, 64), patches=torch.randn(2, h * w, 64), grid=(h, w))
                for h, w in grids]
    with torch.no_grad():
        out = heads(features, role=role, n_views=2)
        patch, summaries = _heads_one_crop_at_a_time(heads, features, role, n_views=2)
    torch.testing.assert_close(out.patch_logits, patch, atol=1e-5, rtol=1e-4)
    assert out.patch_counts == [2 * h * w for h, w in grids]
    assert len(out.summary_logits) == (5 if role == "student" else 2)
    for ours, alone in zip(out.summary_logits, summaries):
        torch.testing.assert_close(ours, alone, atol=1e-5, rtol=1e-4)



@pytest.mark.parametrize("logging_step", [False, True])
def test_loss_holds_at_most_three_tables_of_the_students_size(logging_step: bool):
    """The loss's own tables (teacher probabilities, student log-probabilities, targets) are each
    as large as the student's head output: at 64 images and 65536 prototypes one is 12.6 GB on a
    GPU. Building the targets while the log-softmax ran once held a fourth, and a logging step's
    teacher entropy a fifth."""
    batch, prototypes, crops = 2, 16384, 4  # a table of 61 MB
    counts = [batch * 196, batch * 196, batch * 36, batch * 36]
    rows = sum(counts)
    gen = torch.Generator().manual_seed(0)
    leaf = torch.randn(rows + crops * batch, prototypes, generator=gen).requires_grad_()
    student = SimpleNamespace(extra={"selfpatch": SelfPatchOutput(leaf, counts, crops)},
                              logits=[torch.zeros(batch, prototypes)] * 2)
    teacher_out = SelfPatchOutput.of(torch.randn(rows, prototypes, generator=gen), counts,
                                     torch.randn(2, batch, prototypes, generator=gen))
    teacher = SimpleNamespace(extra={"selfpatch": teacher_out}, logits=[torch.zeros(batch, prototypes)] * 2)
    loss_fn = SelfPatchLoss(out_dim=prototypes)
    loss_fn.record_signals = logging_step  # (the engine turns the signals off between logging steps)
    loss_fn(student, teacher, 0.04)  # cached constants (crop weights) are made once, not counted
    tables = peak_tables(lambda: loss_fn(student, teacher, 0.04), leaf.numel() * 4)
    assert tables < 3.5, f"{tables:.2f} tables of the student's size"
