"""``geodino shard synthetic --out DIR``: the embedded synthetic scenes written as shards.

Hooked into ``geodino shard`` (:mod:`geodino.cli.shard`) by :func:`add_parser` and :func:`run`;
also runnable alone as ``python -m geodino.cli.shard_synthetic --out DIR``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from geodino.config.schema import number


def add_parser(sources: Any, common: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.ArgumentParser:
    """Add the ``synthetic`` source to ``geodino shard``'s sub-parsers (``common``: the shared options)."""
    parser = sources.add_parser(
        "synthetic", help="the embedded synthetic SAR-optical scenes (no download)",
        description="Synthetic 8-band SAR-optical scenes (geodino.data.synthetic) → train and val shards with "
                    "label.cls and mask.npy, card.yaml (with band statistics) and index.json.")
    parser.add_argument("--num-samples", type=number(int, ge=1), default=256, help="training scenes (default 256)")
    parser.add_argument("--val-samples", type=number(int, ge=0), help="validation scenes (default: a quarter of --num-samples)")
    parser.add_argument("--image-size", type=number(int, ge=8), default=32, help="scene size in pixels (default 32)")
    parser.add_argument("--num-classes", type=number(int, ge=2, le=8), default=8, help="land-cover classes, 2-8 (default 8)")
    if common is not None:
        common(parser)
    else:
        parser.add_argument("--out", required=True)
        parser.add_argument("--shard-size", type=number(int, ge=1), default=64)
        parser.add_argument("--workers", type=number(int, ge=1), default=1)
        parser.add_argument("--seed", type=number(int, ge=0), default=0)
        parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run, source="synthetic")
    return parser


def run(args: argparse.Namespace) -> int:
    from geodino.cli import CommandError
    from geodino.data.shards.writer import parse_part
    from geodino.data.sources.synthetic_shards import write_synthetic_shards

    # Options shared with the real sources that the generator has no use for: said, not dropped.
    if parse_part(getattr(args, "part", "0/1")) != (0, 1):
        raise CommandError(f"--part {args.part}: synthetic shards are written by one job (they take seconds); "
                           "drop --part")
    if getattr(args, "strict", False):
        print("--strict has no effect on synthetic scenes: none is ever bad", file=sys.stderr)
    summary = write_synthetic_shards(args.out, args.num_samples, args.val_samples, args.image_size, args.num_classes,
                                     seed=args.seed, shard_size=args.shard_size, workers=args.workers,
                                     progress=not args.no_progress)
    try:
        from geodino.cli.shard import format_summary

        print(format_summary(summary))
    except ImportError:  # pragma: no cover - the shard CLI is part of the package
        print(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m geodino.cli.shard_synthetic")
    sub = parser.add_subparsers(dest="source", required=True)
    add_parser(sub)
    args = parser.parse_args(["synthetic", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
