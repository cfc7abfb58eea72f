"""``geodino plot RUN_DIR``: loss, learning-rate, k-NN and collapse-signal curves of a run as PNG."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plot", help="draw a run's training curves",
        description="Loss, learning rate, k-NN accuracy and collapse signals (teacher entropy, KL to uniform) "
                    "from RUN_DIR/metrics.jsonl (and knn.json) as one PNG.")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--out", help="PNG path (default: RUN_DIR/curves.png)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from geodino.viz.curves import plot_run

    print(plot_run(args.run_dir, args.out))
    return 0
