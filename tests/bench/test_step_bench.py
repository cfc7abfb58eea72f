"""``geodino bench step``: the patch objective timed against the image-only step in one process,
and rounds that alternate geodino's step with the reference-style one."""

import argparse
import json

import pytest
import torch

from geodino.bench.step import _measure_pair, _median_run, add_arguments, run
from geodino.utils import cpu_model

# A step small enough for a test: 1-block ViT, 32-px global and 16-px local crops, 64 prototypes.
TINY_STEP = ["--batch-size", "2", "--global-size", "32", "--local-size", "16", "--local-crops", "2",
             "--patch-size", "8", "--depth", "1", "--out-dim", "64", "--steps", "1", "--warmup", "0"]


def _args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([*TINY_STEP, *extra])


def test_patch_objective_is_timed_against_the_image_only_step():
    out = _measure_pair(_args("--objective", "selfpatch", "--count-flops"))
    assert out["image_only"]["step_s"] > 0 and out["with_patch"]["step_s"] > 0
    assert out["step_time_ratio"] > 0
    assert out["flop_ratio"] > 1.0  # the patch objective adds work


def test_median_round_is_reported_with_every_round():
    runs = [{"imgs_per_s": 3.0, "step_s": 1.0}, {"imgs_per_s": 1.0, "step_s": 3.0}, {"imgs_per_s": 2.0, "step_s": 1.5}]
    median = _median_run(runs)
    assert median["imgs_per_s"] == 2.0 and median["step_s"] == 1.5
    assert median["imgs_per_s_rounds"] == [3.0, 1.0, 2.0]


def test_rounds_alternate_geodino_and_the_reference_style_step(capsys):
    result = run(_args("--rounds", "2", "--threads", "1"))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert len(result["imgs_per_s_rounds"]) == 2 and len(result["baseline"]["imgs_per_s_rounds"]) == 2
    assert len(result["speedup_per_round"]) == 2
    assert result["cpu"] == cpu_model() and result["torch"] == torch.__version__  # every CPU figure names its CPU
    assert result["onednn_linears"] >= 0 and "onednn_linears" not in result["baseline"]
    assert result["speedup_vs_baseline"] == round(result["imgs_per_s"] / result["baseline"]["imgs_per_s"], 3)


@pytest.mark.parametrize("extra,message", [
    (["--count-flops"], "--count-flops is for a patch objective timed against dino alone"),
    (["--patch-hidden-dim", "64"], "--patch-hidden-dim is for a patch objective"),
    (["--objective", "masked", "--rounds", "2"], "--rounds is for --objective dino"),
    (["--objective", "selfpatch", "--baseline", "none"], "--baseline is for --objective dino"),
])
def test_options_the_chosen_comparison_would_not_read_are_refused(extra, message):
    with pytest.raises(ValueError, match=message):
        run(_args(*extra))


def test_the_network_checks_name_the_options_not_recipe_keys():
    with pytest.raises(ValueError, match=r"^--local-size=20 is not a multiple of the patch size 8 \(--patch-size, or"):
        run(_args("--local-size", "20"))
