"""``geodino bench step --objective``: both steps timed in one process, with their ratio."""

import argparse

from geodino.bench.step import _measure_pair, add_arguments


def test_patch_objective_is_timed_against_the_image_only_step():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--objective", "selfpatch", "--batch-size", "2", "--global-size", "32",
                              "--local-size", "16", "--local-crops", "2", "--patch-size", "8", "--depth", "1",
                              "--out-dim", "64", "--steps", "1", "--warmup", "0", "--count-flops"])
    out = _measure_pair(args)
    assert out["image_only"]["step_s"] > 0 and out["with_patch"]["step_s"] > 0
    assert out["step_time_ratio"] > 0
    assert out["flop_ratio"] > 1.0  # the patch objective adds work


def test_median_round_is_reported_with_every_round():
    from geodino.bench.step import _median_run

    runs = [{"imgs_per_s": 3.0, "step_s": 1.0}, {"imgs_per_s": 1.0, "step_s": 3.0}, {"imgs_per_s": 2.0, "step_s": 1.5}]
    median = _median_run(runs)
    assert median["imgs_per_s"] == 2.0 and median["step_s"] == 1.5
    assert median["imgs_per_s_rounds"] == [3.0, 1.0, 2.0]


def test_rounds_alternate_geodino_and_the_reference_style_step(capsys):
    import json

    from geodino.bench.step import run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--batch-size", "2", "--global-size", "32", "--local-size", "16", "--local-crops", "2",
                              "--patch-size", "8", "--depth", "1", "--out-dim", "64", "--steps", "1", "--warmup", "0",
                              "--rounds", "2", "--threads", "1"])
    result = run(args)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert len(result["imgs_per_s_rounds"]) == 2 and len(result["baseline"]["imgs_per_s_rounds"]) == 2
    assert len(result["speedup_per_round"]) == 2
    assert result["speedup_vs_baseline"] == round(result["imgs_per_s"] / result["baseline"]["imgs_per_s"], 3)
