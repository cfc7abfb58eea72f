"""``geodino stats``: per-band mean/std of shards, written into the dataset card."""

from __future__ import annotations

import argparse
from typing import Any

from geodino.config.schema import number


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stats", help="per-band mean/std of shards, into the dataset card",
        description="Compute per-band mean and standard deviation of shards in one streaming pass and write "
                    "them into the shard folder's card.yaml (and --card). For a folder, only the train split "
                    "is measured when it has one (normalisation must not see validation or test data).")
    parser.add_argument("shards", metavar="SHARDS", help="shard folder, tar path or brace pattern (dir/train-{000000..000003}.tar)")
    parser.add_argument("--card", help="also write the card with statistics here (e.g. datasets/my-data.yaml)")
    parser.add_argument("--split", help="measure this split of a folder (default: train if present, else all; 'all' for all)")
    parser.add_argument("--max-samples", type=number(int, ge=1), help="stop after this many samples (a quick estimate)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    # Split choices, band mappings, skipped or cleaned-up files are logged: show them.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from geodino.data.splits import training_split
    from geodino.data.stats import compute_band_statistics, default_card_path, write_statistics

    choice = training_split(args.shards, args.split)
    paths = choice.paths
    print(f"measuring {choice.describe()}")
    stats = compute_band_statistics(paths, max_samples=args.max_samples, progress=not args.no_progress)
    folder_card = default_card_path(paths)
    write_statistics(stats, folder_card)
    if args.card:
        write_statistics(stats, args.card, template=folder_card)
    print(f"{stats.samples} samples, {len(paths)} shard(s)")
    print(f"{'band':<6} {'mean':>14} {'std':>14}")
    for band, mean, std in zip(stats.bands, stats.mean, stats.std):
        print(f"{band:<6} {mean:>14.6g} {std:>14.6g}")
    print(f"written to {folder_card}" + (f" and {args.card}" if args.card else ""))
    return 0
