"""``geodino bench host`` times the engine's whole step with a small model and counts its ops."""

import argparse

from geodino.bench.host import add_arguments, run


def _bench(*args: str) -> dict:
    """``geodino bench host`` with ``args``, one timed step on one thread: its JSON line."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args([*args, "--steps", "1", "--threads", "1"]))


def test_host_bench_reports_time_and_ops_per_objective_and_batch(capsys):
    line = _bench("--objectives", "dino,masked", "--images", "4")
    assert [(r["objective"], r["images"]) for r in line["rows"]] == [("dino", 4), ("masked", 4)]
    assert all(r["ms_per_step"] > 0 and r["ops_per_step"] > 100 for r in line["rows"])
    assert all(r["augment_host_to_device_copies"] == 4 for r in line["rows"])  # 2 per view group
    assert line["cpu"] and '"bench": "host"' in capsys.readouterr().out


def test_ops_per_step_do_not_grow_with_the_batch_and_draws_are_timed(capsys):
    # Every op a step dispatches is a kernel launch on a GPU: the count must not depend on how many
    # images the step holds (it did for the masked objective: a few ops per masked crop). An op whose
    # random subset of rows comes up empty is skipped, hence a few ops either way.
    line = _bench("--objectives", "dino,masked", "--images", "4,32")
    ops = {(r["objective"], r["images"]): r["ops_per_step"] for r in line["rows"]}
    for objective in ("dino", "masked"):
        assert abs(ops[(objective, 32)] - ops[(objective, 4)]) <= 0.02 * ops[(objective, 4)], ops
    assert [(d["images"], d["global_batch"]) for d in line["draws"]] == [(64, 64), (1024, 1024), (64, 1024)]
    assert all(d["draw_ms"] > 0 and d["draw_and_mask_ms"] >= 0 for d in line["draws"])


def test_a_step_dispatches_a_fraction_of_the_ops_it_did_before_issue_14(capsys, monkeypatch):
    # PyTorch's own linears, the path a GPU takes (and a CPU where oneDNN's loses the measurement),
    # so that the count does not depend on what this machine picks. Before issue 14 (89d34ae) one
    # step dispatched, at 64 images, 1242 (DINO), 1982 (SelfPatch) and 2998-3283 (masked: a few per
    # masked crop) ops from Python, and 1593, 2841 and 3423 with the backward pass, the optimiser
    # and the insides of custom autograd functions. With torch 2.14.1 they are now 285, 516, 324
    # and 523, 1042, 652 (BENCHMARKS.md, "Host work per step"), 266, 491, 316 and 496, 994, 632 in
    # session 14; the budgets leave ~5 % for other torch versions.
    monkeypatch.setenv("GEODINO_ONEDNN_LINEAR", "0")
    line = _bench("--images", "8")
    ops = {r["objective"]: (r["ops_per_step"], r["all_ops_per_step"], r["launches_per_step"]) for r in line["rows"]}
    assert ops["dino"][0] <= 297 and ops["selfpatch"][0] <= 535 and ops["masked"][0] <= 336, ops
    assert ops["dino"][1] <= 547 and ops["selfpatch"][1] <= 1088 and ops["masked"][1] <= 680, ops
    # Launching ops (views and allocations left out): before issue 14 1025, 1765 and 1221 at 8
    # images; session 11 308, 591 and 399; with the crop sizes packed (session 12) 252, 530, 346;
    # session 13 (fused normalisation, views' logits and CLS rows without copies, ...) 232, 468, 312;
    # session 14 (affine maps and jitter in one launch, DINO's pairs summed on the teacher's side,
    # SelfPatch's two terms in one dot product) 210, 433, 286; session 15 (jitter means kept finite)
    # 212, 435, 288. Issue 14's target is 25 % of before:
    # 256, 441 and 305.
    assert ops["dino"][2] <= 220 and ops["selfpatch"][2] <= 441 and ops["masked"][2] <= 300, ops
    assert all(launching < every for _, every, launching in ops.values()), ops


def test_a_vit_s16_step_launches_a_fraction_of_the_ops_of_one_pass_per_crop_size(monkeypatch):
    # The layers of a ViT-S/16 with stochastic depth (the recipes' student): 12 blocks, each once
    # per crop size and with its own draws, made a DINO step launch 1386 ops before the sizes were
    # packed (session 11 code, ae67841; 3173 before issue 14, 89d34ae); 810 in session 12, 748 in
    # session 13, 726 now.
    monkeypatch.setenv("GEODINO_ONEDNN_LINEAR", "0")
    line = _bench("--model", "vits16", "--objectives", "dino", "--images", "4")
    packed = line["rows"][0]["launches_per_step"]
    monkeypatch.setenv("GEODINO_PACKED", "0")
    plain = _bench("--model", "vits16", "--objectives", "dino", "--images", "4")["rows"][0]["launches_per_step"]
    assert packed <= 750 and packed <= 0.62 * plain, (packed, plain)


def test_the_rgb_recipe_step_launches_a_fraction_of_its_ops_before_issue_14(monkeypatch):
    # The reference recipe's colour jitter on RGB (the ImageNet card): kornia's hue rotation took
    # ~76 launches a call, 8 calls a step. A DINO step launched 2106 ops before issue 14 (89d34ae,
    # 64 images), 1010 in session 13 (cb4460c), 391 with our hue rotation and one blend pass over
    # every row per position (session 14).
    monkeypatch.setenv("GEODINO_ONEDNN_LINEAR", "0")
    line = _bench("--card", "imagenet", "--objectives", "dino", "--images", "8")
    row = line["rows"][0]
    assert row["card"] == "imagenet" and row["augment_host_to_device_copies"] == 4, row
    assert row["launches_per_step"] <= 410, row


def test_views_allocations_and_no_op_casts_launch_nothing_and_compute_and_copies_do():
    import torch

    from geodino.bench.host import count_ops

    x = torch.randn(4, 3)
    cases = {  # step -> (from Python, all, launching), counted by hand
        "view ops": (lambda k: x.reshape(12).unsqueeze(0).t().detach(), (4, 4, 0)),
        "a cast to its own dtype": (lambda k: x.to(torch.float32), (1, 1, 0)),
        "a cast that copies": (lambda k: x.to(torch.float64), (1, 1, 1)),
        "a reshape that copies": (lambda k: x.t().reshape(12), (2, 2, 1)),
        "an allocation": (lambda k: torch.empty(3), (1, 1, 0)),
        "compute": (lambda k: torch.cat([x + 1, x.mul_(1.0)]), (3, 3, 3)),
    }
    for what, (step, want) in cases.items():
        assert count_ops(step, 0) == want, what
