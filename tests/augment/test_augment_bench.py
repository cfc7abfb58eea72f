"""The augmentation benchmark (geodino/bench/augment.py) runs and reports its figures."""

from __future__ import annotations

import argparse

from geodino.bench import augment as bench


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_bench_runs_on_cpu_and_prints_one_json_line(capsys) -> None:  # type: ignore[no-untyped-def]
    args = _args("--device", "cpu", "--batch-size", "4", "--image-size", "32", "--global-size", "24",
                 "--local-size", "12", "--local-crops", "2", "--steps", "1", "--warmup", "0")
    assert args.in_chans == 14
    result = bench.run(args)
    assert result["device"] == "cpu" and result["crops_per_s"] > 0
    assert abs(result["crops_per_s"] - 4 * result["images_per_s"]) < 0.1 * result["crops_per_s"]
    assert capsys.readouterr().out.count("\n") == 1


def test_bench_rgb_mode() -> None:
    args = _args("--device", "cpu", "--mode", "rgb", "--in-chans", "3", "--batch-size", "2", "--image-size", "32",
                 "--global-size", "24", "--local-size", "12", "--local-crops", "1", "--steps", "1", "--warmup", "0")
    assert bench.run(args)["mode"] == "rgb"
