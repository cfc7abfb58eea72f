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
