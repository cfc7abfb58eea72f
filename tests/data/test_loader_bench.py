"""The loader benchmark (geodino/bench/loader.py) runs end to end on a few synthetic patches."""

from __future__ import annotations

import argparse

from geodino.bench import loader as bench


def test_bench_prints_one_json_line(capsys) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--patches", "8", "--workers", "0", "--batch-size", "4", "--shard-size", "4"])
    result = bench.run(args)
    assert result["samples"] == 8 and result["shards_samples_per_s"] > 0 and result["raw_samples_per_s"] > 0
    assert result["speedup"] > 0
    assert capsys.readouterr().out.count("\n") == 1
