"""Masked-patch objective: the loss against a hand computation, the mask token, gradients, masks."""

from types import SimpleNamespace

import pytest
import torch

from geodino.config import load_config
from geodino.objectives import MaskedOutput, MaskedPatchLoss
from geodino.objectives.networks import build_objectives, build_student_teacher
from geodino.rng import RowRandom
from tests.engine.runs import TINY
from tests.objectives.hand_values import LN2, UNIFORM, P, Q, logits_for
from tests.objectives.live_memory import peak_tables


def _output(rows, masks, temp):
    return SimpleNamespace(extra={"masked": MaskedOutput(logits=logits_for(rows, temp), masks=masks)})


def test_loss_and_center_match_hand_computation():
    # Three crops of 4 patches: crop 0 has 2 masked patches, crop 1 one, crop 2 none.
    masks = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    # Cross-entropies (units of ln 2): crop 0: uniform vs P 2.25, P vs P 1.75 -> image mean 2.0;
    # crop 1: P vs Q 2.625. Sum of image means over all 3 crops (DINOv2): (2.0 + 2.625) / 3.
    loss_fn = MaskedPatchLoss(out_dim=4)
    loss = loss_fn(_output([P, P, Q], masks, 0.1), _output([UNIFORM, P, P], masks, 0.04), teacher_temp=0.04)
    assert abs(loss.item() - 4.625 / 3 * LN2) < 1e-5
    expected = 0.1 * logits_for([UNIFORM, P, P], 0.04).mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center.center, expected, atol=1e-7, rtol=0)
    assert loss_fn.signals()["patch_fraction"] == pytest.approx(3 / 12)


def test_the_hand_computation_holds_with_the_positions_worked_out_on_the_host():
    from geodino.models.multicrop import PatchMasks

    masks = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool)
    rows = PatchMasks.to_device([masks.view(3, 2, 2), None], torch.device("cpu")).rows
    assert rows.tolist() == [0, 1, 7]  # crop-, image- then patch-major, as masks.reshape(-1)
    student, teacher = _output([P, P, Q], masks, 0.1), _output([UNIFORM, P, P], masks, 0.04)
    student.extra["masked"].rows = teacher.extra["masked"].rows = rows
    loss = MaskedPatchLoss(out_dim=4)(student, teacher, teacher_temp=0.04)
    assert abs(loss.item() - 4.625 / 3 * LN2) < 1e-5


def test_the_heads_gather_the_same_tokens_by_host_positions_as_by_boolean_masks():
    from geodino.models.backbone import BackboneOutput
    from geodino.objectives.masked import MaskedPatchHeads
    from geodino.models.multicrop import PatchMasks

    torch.manual_seed(0)
    heads = MaskedPatchHeads(16, out_dim=8, hidden_dim=8, bottleneck_dim=4)
    features = [BackboneOutput(cls=torch.randn(3, 16), patches=torch.randn(3, 4, 16), grid=(2, 2)) for _ in range(3)]
    masks = [torch.rand(3, 2, 2) < 0.5, torch.rand(3, 2, 2) < 0.5, None]
    by_mask = heads(features, role="student", masks=masks)
    by_rows = heads(features, role="student", masks=PatchMasks.to_device(masks, torch.device("cpu")))
    assert by_mask.rows is None and by_rows.rows is not None
    torch.testing.assert_close(by_rows.logits, by_mask.logits, rtol=0, atol=0)
    assert torch.equal(by_rows.masks, by_mask.masks)


def test_no_masked_patch_gives_zero_loss_and_keeps_the_center():
    masks = torch.zeros(2, 4, dtype=torch.bool)
    empty = torch.zeros(0, 4)
    out = SimpleNamespace(extra={"masked": MaskedOutput(logits=empty, masks=masks)})
    loss_fn = MaskedPatchLoss(out_dim=4)
    assert loss_fn(out, out, 0.04).item() == 0.0
    assert not loss_fn.center.center.any()


def _networks(*overrides):
    cfg = load_config(None, [*TINY, "objective.patch=masked", "objective.patch_out_dim=32",
                             "objective.patch_hidden_dim=16", "objective.patch_bottleneck_dim=8", *overrides])
    torch.manual_seed(0)
    student, teacher = build_student_teacher(cfg, in_chans=3)
    return student.eval(), teacher, build_objectives(cfg)["masked"]


def test_masked_patches_lose_their_content_but_keep_their_position():
    student, _, _ = _networks()
    backbone, token = student.backbone, student.extra_heads["masked"].mask_token
    x = torch.randn(1, 3, 32, 24)  # a 4x3 grid
    mask = torch.zeros(1, 4, 3, dtype=torch.bool)
    mask[0, 1, 2] = True  # the patch at pixels [8:16, 16:24]
    y = x.clone()
    y[..., 8:16, 16:24] = torch.randn(3, 8, 8)
    with torch.no_grad():
        a, b = backbone(x, mask=mask, mask_token=token), backbone(y, mask=mask, mask_token=token)
        plain, unmasked = backbone(x), backbone(x, mask=torch.zeros_like(mask), mask_token=token)
    torch.testing.assert_close(a.patches, b.patches)  # the changed pixels are not seen
    torch.testing.assert_close(unmasked.patches, plain.patches)  # an empty mask changes nothing
    assert not torch.allclose(a.patches, plain.patches)
    with pytest.raises(ValueError, match="mask token"):
        backbone(x, mask=mask)


def test_gradients_reach_the_student_and_the_mask_token_only():
    student, teacher, loss_fn = _networks()
    student.train()
    views = [torch.randn(4, 3, 32, 32) for _ in range(2)] + [torch.randn(4, 3, 16, 16)]
    grids = [(4, 4), (4, 4), (2, 2)]
    masks = loss_fn.student_masks(grids, 2, RowRandom(0, 0, 4))
    assert masks[2] is None and masks[0].shape == (4, 4, 4)
    masks[0][0, :2] = True  # make sure something is masked
    with torch.no_grad():
        teacher_out = teacher(views[:2], extra_views=views[2:], masks=masks)
    student_out = student(views, masks=masks)
    assert len(teacher_out.features) == 2  # the masked objective needs no teacher pass on local crops
    loss = loss_fn(student_out, teacher_out, 0.04)
    assert loss.item() > 0
    loss.backward()
    heads = student.extra_heads["masked"]
    assert heads.mask_token.grad is not None and heads.mask_token.grad.abs().sum() > 0
    assert heads.head.mlp[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher_out.extra["masked"].logits.requires_grad
    # the teacher's rows are taken at the student's masked positions of the same (unmasked) crops
    n_masked = int(sum(m.sum() for m in masks[:2]))
    assert teacher_out.extra["masked"].logits.shape == student_out.extra["masked"].logits.shape == (n_masked, 32)


def test_masks_without_a_mask_token_are_refused():
    cfg = load_config(None, [*TINY])
    student, _ = build_student_teacher(cfg, in_chans=3)
    with pytest.raises(ValueError, match="mask token"):
        student([torch.randn(1, 3, 32, 32)], masks=[torch.ones(1, 4, 4, dtype=torch.bool)])


def test_a_step_where_no_crop_is_masked_runs_and_reports_no_patch_entropy():
    # Issue 14: at a few images per GPU, often no global crop of a process is masked; the patch head
    # then runs on zero rows (so DDP sees its parameters used) and used to fail to reshape them.
    student, teacher, loss_fn = _networks()
    student.train()
    views = [torch.randn(2, 3, 32, 32) for _ in range(2)]
    masks = [torch.zeros(2, 4, 4, dtype=torch.bool) for _ in range(2)]
    with torch.no_grad():
        teacher_out = teacher(views, masks=masks)
    student_out = student(views, masks=masks)
    assert student_out.extra["masked"].logits.shape == (0, 32)
    loss = loss_fn(student_out, teacher_out, 0.04)
    assert loss.item() == 0.0
    loss.backward()  # the head's parameters get (zero) gradients: every process reduces the same ones
    assert student.extra_heads["masked"].head.mlp[0].weight.grad is not None
    assert "teacher_entropy" not in loss_fn.signals()  # not the previous step's value
    assert loss_fn.signals()["patch_fraction"] == 0.0


def test_a_logging_step_holds_at_most_three_tables_of_the_masked_tokens_size():
    """Teacher probabilities, student log-probabilities and targets, each [masked tokens, K]: the
    teacher's entropy, recorded on logging steps, once added two more while they lived."""
    masks = torch.zeros(4, 196, dtype=torch.bool)
    masks[:, :128] = True
    prototypes = 32768  # a table of 67 MB
    gen = torch.Generator().manual_seed(0)
    student_rows = torch.randn(int(masks.sum()), prototypes, generator=gen).requires_grad_()
    student = SimpleNamespace(extra={"masked": MaskedOutput(logits=student_rows, masks=masks)})
    teacher = SimpleNamespace(extra={"masked": MaskedOutput(logits=torch.randn(student_rows.shape, generator=gen),
                                                            masks=masks)})
    loss_fn = MaskedPatchLoss(out_dim=prototypes)
    loss_fn(student, teacher, 0.04)
    tables = peak_tables(lambda: loss_fn(student, teacher, 0.04), student_rows.numel() * 4)
    assert loss_fn.record_signals and tables < 3.5, f"{tables:.2f} tables of the masked tokens' size"
