"""``geodino attention CKPT INPUT [--out DIR]``: last-block CLS attention maps of the teacher."""

from __future__ import annotations

import argparse
from typing import Any

from geodino.config.schema import number


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "attention", help="draw the teacher's last-block CLS attention per head",
        description="Last-block CLS self-attention of a checkpoint's teacher ViT, one PNG per head, a grid, and "
                    "the head mean over a true-colour / SAR false-colour composite. INPUT: a GeoTIFF (bands "
                    "matched to the card by description, else in file order), SHARDS#KEY (a shard sample) or "
                    "synthetic#INDEX.")
    parser.add_argument("checkpoint", metavar="CKPT")
    parser.add_argument("input", metavar="INPUT", help="GeoTIFF, SHARDS#KEY or synthetic#INDEX")
    parser.add_argument("--out", help="output folder (default: <checkpoint folder>/attention)")
    parser.add_argument("--size", type=number(int, ge=1), help="resize the input to SIZE x SIZE (default: its own size, in "
                                                 "whole patches)")
    parser.add_argument("--card", help="dataset card (name or YAML) if the checkpoint's cannot be found")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from geodino.viz.attention import attention_maps

    out = args.out or Path(args.checkpoint).parent / "attention"
    written = attention_maps(args.checkpoint, args.input, out, args.size, args.card)
    print(f"{len(written['heads'])} heads: {written['grid']}")
    print(f"mean over a composite: {written['mean_overlay']}")
    return 0
