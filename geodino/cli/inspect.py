"""``geodino inspect``: what is in a set of shards, as text or JSON, with a preview picture."""

from __future__ import annotations

import argparse
from typing import Any

from geodino.config.schema import number


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inspect", help="summarise shards and save a preview picture",
        description="Sample count, bands, shape, dtype, label frequencies and per-band min/mean/max of shards, "
                    "plus a PNG grid of true-colour (B04/B03/B02) and SAR false-colour (VV, VH, VV-VH) "
                    "composites or RGB images.")
    parser.add_argument("shards", metavar="SHARDS", help="shard folder, tar path or brace pattern")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--preview", help="PNG path (default: <shard folder>/preview.png)")
    parser.add_argument("--preview-count", type=number(int, ge=0), default=8, help="samples in the preview (0: none)")
    parser.add_argument("--max-samples", type=number(int, ge=1), help="stop after this many samples")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    # Split choices, band mappings, skipped or cleaned-up files are logged: show them.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import json

    from geodino.data.inspect import format_report, inspect_shards, render_preview
    from pathlib import Path

    from geodino.data.shards.format import expand_shards, is_remote

    paths = expand_shards(args.shards)
    report, kept = inspect_shards(paths, max_samples=args.max_samples, keep=args.preview_count,
                                  progress=not args.json)
    if kept:
        beside = Path("preview.png") if is_remote(paths[0]) else Path(paths[0]).parent / "preview.png"
        report["preview"] = str(render_preview(kept, args.preview or beside))
    print(json.dumps(report) if args.json else format_report(report))
    return 0
