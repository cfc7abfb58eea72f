"""``geodino compare RUN_DIR [RUN_DIR ...]``: runs side by side (settings that differ, scores) as
Markdown, CSV and a bar chart."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare runs: the settings that differ and every score, in one table",
        description="Side by side, for pretraining or segmentation run folders: the recipe keys whose values "
                    "differ, then steps, final loss, the end-of-pretraining k-NN (random vs trained teacher, "
                    "gain), every `geodino eval` k-NN / linear-probe score per modality choice found under "
                    "RUN_DIR/eval*/, and segmentation mIoU. Missing results stay blank. Prints the Markdown "
                    "table and writes compare.md, compare.csv and compare.png.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run folder (or its checkpoint.pt)")
    parser.add_argument("--out", default="compare", help="output folder (default: ./compare)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import logging

    from geodino.eval.compare import compare_runs, to_json, to_markdown, write_comparison

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    comparison = compare_runs(args.run_dirs)
    written = write_comparison(comparison, args.out)
    if args.json:
        print(json.dumps({**to_json(comparison), "written": written}))
    else:
        print(to_markdown(comparison), end="")
        print(f"\nwritten: {written['md']}, {written['csv']}, {written['png']}")
    return 0
