"""``geodino doctor``: is this machine ready to pretrain? Versions, the training step in every
objective and precision, resume, torchrun, fp32 against bf16, GPU throughput and augmentation; one
JSON line per check."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check this machine for training (one JSON line per check)",
        description="Runs the checks in turn and prints one JSON line each: versions, steps (3 training steps "
                    "per objective and precision), resume (a stopped and resumed run equals a straight one), "
                    "torchrun (pretraining under the launcher), precision (fp32 against bf16 losses), "
                    "throughput (GPU images/s and MFU), loader (the shard path's samples/s against the step's "
                    "images/s) and augment (crops/s). Without a CUDA GPU a reduced CPU "
                    "form runs. A failing check prints \"ok\": false and an error, and the next one runs; the "
                    "exit status is 1 if any check failed.")
    parser.add_argument("--only", metavar="NAMES",
                        help="comma-separated checks to run (default: all): versions, steps, resume, torchrun, "
                             "precision, throughput, loader, augment")
    parser.add_argument("--out", metavar="FILE", help="also write every line, as one JSON list, to FILE")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from geodino.bench.doctor import passed, run_checks, select

    return 0 if passed(run_checks(select(args.only), args.out)) else 1
