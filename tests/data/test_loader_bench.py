"""The loader benchmark (geodino/bench/loader.py) runs end to end on a few synthetic patches."""

from __future__ import annotations

import argparse

from geodino.bench import loader as bench


def test_bench_prints_one_json_line(capsys) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--patches", "8", "--workers", "0", "--batch-size", "4", "--shard-size", "4", "--repeats", "1"])
    result = bench.run(args)
    assert result["samples"] == 8 and result["shards_samples_per_s"] > 0 and result["raw_samples_per_s"] > 0
    assert result["speedup"] > 0
    # Format 2 stores exactly the raw pixels (uint16 S2 at native sizes, float32 SAR); format 1 a
    # float32 stack of 14 x 120 x 120 plus the npy header.
    assert result["image_bytes_per_sample"] == result["raw_pixel_bytes_per_sample"] == 275200
    assert result["format1_image_bytes_per_sample"] == 14 * 120 * 120 * 4 + 128
    for key in ("decode_samples_per_s_per_core", "previous_decode_samples_per_s_per_core",
                "decode_speedup_vs_previous", "format1_decode_samples_per_s_per_core"):
        assert result[key] > 0
    assert result["cpu"]
    assert capsys.readouterr().out.count("\n") == 1
