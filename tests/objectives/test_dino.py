"""DINOLoss against values worked out by hand, and against the reference-style computation."""

import math

import pytest
import torch

from geodino.bench.reference_step import ReferenceStyleStep
from geodino.config.schema import Config
from geodino.objectives import DINOLoss

LN2 = math.log(2)
TEACHER_TEMP = 0.04


def _as_logits(probs, temp):
    # logits whose softmax at temperature `temp` is exactly `probs`
    return temp * torch.log(torch.tensor([probs]))


def test_loss_and_center_match_hand_computation():
    # Teacher: view 0 uniform, view 1 (1/2, 1/4, 1/8, 1/8). Student (temperature 0.1):
    # q0 = (1/2, 1/4, 1/8, 1/8), q1 = uniform, q2 = (1/8, 1/8, 1/4, 1/2), q3 = uniform.
    p_b = [0.5, 0.25, 0.125, 0.125]
    teacher = [torch.zeros(1, 4), _as_logits(p_b, TEACHER_TEMP)]
    student = [_as_logits(p_b, 0.1), torch.zeros(1, 4), _as_logits([0.125, 0.125, 0.25, 0.5], 0.1), torch.zeros(1, 4)]
    # Cross-entropies in units of ln 2:
    #   uniform vs q1, q2, q3: 2, (3+3+2+1)/4 = 2.25, 2          -> 6.25
    #   p_b vs q0, q2, q3:     1.75, 1.5+0.75+0.25+0.125 = 2.625, 2 -> 6.375
    # Six pairs: (6.25 + 6.375) / 6 = 2.1041666 ln 2.
    loss_fn = DINOLoss(out_dim=4)
    loss = loss_fn(student, teacher, TEACHER_TEMP)
    assert abs(loss.item() - 12.625 / 6 * LN2) < 1e-5
    # center = 0.9 * 0 + 0.1 * mean(teacher rows) = 0.1 * 0.04 * ln2 * (-1, -2, -3, -3) / 2
    expected_center = 0.002 * LN2 * torch.tensor([[-1.0, -2.0, -3.0, -3.0]])
    torch.testing.assert_close(loss_fn.center, expected_center, atol=1e-7, rtol=0)


def test_center_is_applied_before_sharpening():
    loss_fn = DINOLoss(out_dim=4)
    loss_fn.center.fill_(0.0)
    loss_fn.center[0, 0] = 1.0  # a large center on prototype 0 removes it from the target
    probs = loss_fn.teacher_probabilities([torch.zeros(1, 4)], TEACHER_TEMP)[0]
    assert probs[0, 0] < 1e-9
    torch.testing.assert_close(probs[0, 1:], torch.full((3,), 1 / 3), atol=1e-6, rtol=0)


def test_matches_reference_style_loss_on_random_logits():
    cfg = Config()
    cfg.model.arch, cfg.model.depth, cfg.model.out_dim = "vit_tiny_patch16_224", 1, 64
    cfg.data.batch_size, cfg.optim.epochs, cfg.optim.warmup_epochs = 3, 1, 0
    reference = ReferenceStyleStep(cfg, in_chans=3, steps_per_epoch=1)
    ours = DINOLoss(out_dim=64)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):  # several calls: the centers must evolve identically
        student = [torch.randn(3, 64, generator=g) for _ in range(6)]
        teacher = [torch.randn(3, 64, generator=g) for _ in range(2)]
        expected = reference.loss(student, teacher, 0.05)
        got = ours(student, teacher, 0.05)
        assert abs(got.item() - expected.item()) < 1e-5
        torch.testing.assert_close(ours.center, reference.center, atol=1e-6, rtol=0)


def test_gradient_reaches_student_only():
    loss_fn = DINOLoss(out_dim=8)
    student = [torch.randn(2, 8, requires_grad=True) for _ in range(4)]
    teacher = [torch.randn(2, 8, requires_grad=True) for _ in range(2)]
    loss_fn(student, teacher, TEACHER_TEMP).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)
    assert all(t.grad is None for t in teacher)


def test_rejects_too_few_views():
    loss_fn = DINOLoss(out_dim=4)
    try:
        loss_fn([torch.zeros(1, 4)], [torch.zeros(1, 4)], TEACHER_TEMP)
    except ValueError as err:
        assert "student" in str(err)
    else:
        raise AssertionError("expected a ValueError")


def test_views_of_different_shapes_are_refused_by_name():
    loss_fn = DINOLoss(out_dim=4)
    student = [torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(3, 4)]
    try:
        loss_fn(student, [torch.zeros(2, 4)], TEACHER_TEMP)
    except ValueError as err:
        assert "(3, 4)" in str(err) and "one shape" in str(err)
    else:
        raise AssertionError("expected a ValueError")


def test_the_weighted_sum_of_the_losses():
    from geodino.objectives.networks import weighted_sum

    losses = {"dino": torch.tensor(2.0), "selfpatch": torch.tensor(3.0)}
    assert weighted_sum(losses, {"dino": 1.0, "selfpatch": 0.5}).item() == 3.5
    assert weighted_sum({"dino": losses["dino"]}, {"dino": 1.0}) is losses["dino"]


def test_loss_of_a_float64_student_against_a_float32_teacher():
    # The pair sum is one dot product, which does not promote dtypes by itself.
    torch.manual_seed(5)
    student = [torch.randn(2, 8, dtype=torch.float64) for _ in range(3)]
    teacher = [torch.randn(2, 8) for _ in range(2)]
    got = DINOLoss(8)(student, teacher, 0.04)
    want = DINOLoss(8)(student, [t.double() for t in teacher], 0.04)
    assert got.dtype == torch.float64 and torch.allclose(got, want)


@pytest.mark.parametrize("n_student, n_teacher", [(1, 1), (2, 3), (3, 4), (0, 0)])
def test_targets_refuse_view_counts_dino_cannot_pair(n_student: int, n_teacher: int) -> None:
    # The teacher's views are the first of the student's: 1 <= teacher <= student, >= 2 students.
    # (One view short once came back as a table of the wrong length; a single student view divided by 0.)
    loss_fn = DINOLoss(out_dim=4)
    with pytest.raises(ValueError, match=f"got {n_student} student and {n_teacher} teacher views"):
        loss_fn.targets(torch.zeros(n_teacher, 2, 4), n_student, 0.04)
