"""``geodino bench host`` times the engine's whole step with a negligible model and counts its ops."""

import argparse

from geodino.bench.host import add_arguments, run


def test_host_bench_reports_time_and_ops_per_objective_and_batch(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    line = run(parser.parse_args(["--objectives", "dino,masked", "--images", "4", "--steps", "1", "--threads", "1"]))
    assert [(r["objective"], r["images"]) for r in line["rows"]] == [("dino", 4), ("masked", 4)]
    assert all(r["ms_per_step"] > 0 and r["ops_per_step"] > 100 for r in line["rows"])
    assert line["cpu"] and '"bench": "host"' in capsys.readouterr().out
