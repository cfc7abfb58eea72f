"""``geodino export CKPT --out DIR``: the teacher backbone as safetensors + a timm config."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="export the teacher backbone for timm (safetensors + config.json + bands.json)",
        description="Write the teacher backbone of a checkpoint as model.safetensors with timm's config.json "
                    "(architecture, model arguments, input size, per-band mean/std), bands.json (band order "
                    "and normalisation from the dataset card) and a README with the timm loading lines.")
    parser.add_argument("checkpoint", metavar="CKPT")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--card", help="dataset card (name or YAML) if the checkpoint's cannot be found")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from geodino.export import export_backbone

    paths = export_backbone(args.checkpoint, args.out, args.card)
    for path in paths.values():
        print(path)
    return 0
