"""``geodino bench step|loader|augment|pays``: benchmarks, each against a baseline in the same run."""

from __future__ import annotations

import argparse
import importlib

BENCHES = {
    "step": ("geodino.bench.step", "training-step images/s against the reference-style step"),
    "loader": ("geodino.bench.loader", "shard bytes per sample and decode rate per core against the raw files and "
                                       "the previous read path; streaming against raw BigEarthNet folders"),
    "augment": ("geodino.bench.augment", "multi-crop augmentation crops/s"),
    "host": ("geodino.bench.host", "host time and aten ops per training step with a model that costs nothing "
                                   "(what a GPU would wait for), per objective and batch"),
    "pays": ("geodino.bench.pays", "does pretraining pay: random init vs pretrained vs mean spectrum on held-out "
                                   "worlds, per step budget"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="speed benchmarks (one JSON line each)",
                              description="Benchmarks; each prints one JSON line.")
    benches = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name, (module, help_text) in BENCHES.items():
        sub = benches.add_parser(name, help=help_text, description=help_text)
        try:
            importlib.import_module(module).add_arguments(sub)
        except ModuleNotFoundError:
            continue
        sub.set_defaults(func=_runner(module))


def _runner(module: str):
    def run(args: argparse.Namespace) -> int:
        importlib.import_module(module).run(args)
        return 0

    return run
