"""``geodino shard``: convert an Earth-observation dataset into webdataset shards.

One sub-command per source (``bigearthnet``, ``ssl4eo-s12``, ``imagefolder``), each a thin layer
over its reader in :mod:`geodino.data.sources` and :func:`geodino.data.shards.writer.write_shards`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from geodino.config.schema import number


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder for shards, index.json, card.yaml, rejects.jsonl")
    parser.add_argument("--shard-size", type=number(int, ge=1), default=256, help="samples per shard (default: 256)")
    parser.add_argument("--workers", type=number(int, ge=1), default=min(4, os.cpu_count() or 1),
                        help="reader processes (default: min(4, CPUs))")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first bad patch (naming the file) instead of logging it to rejects.jsonl")
    parser.add_argument("--seed", type=number(int, ge=0), default=0, help="seed of the (deterministic) patch-to-shard assignment")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--part", default="0/1", metavar="I/N",
                        help="write only part I (0-based) of N: a deterministic, disjoint set of whole shards, so "
                             "N jobs (e.g. a SLURM array: --part $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT) "
                             "fill one folder; index.json is complete once every part is")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "shard", help="convert a dataset into webdataset shards",
        description="Convert a dataset into webdataset shards (<out>/<split>-000000.tar ...) with an "
                    "index.json, the dataset card, rejects.jsonl and summary.json. Re-running skips "
                    "finished shards.")
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)

    ben = sources.add_parser(
        "bigearthnet", help="BigEarthNet v1 (S2 + S1) or v2 (reBEN)",
        description="BigEarthNet → 14-band samples (S2 B01..B12 without B10, then S1 VH, VV) on the 120×120 "
                    "10 m grid, with 19- and 43-class labels (and v2 reference-map masks).")
    ben.add_argument("--s2-root", required=True, help="v1: BigEarthNet-v1.0/; v2: BigEarthNet-S2/")
    ben.add_argument("--s1-root", required=True, help="v1: BigEarthNet-S1-v1.0/; v2: BigEarthNet-S1/")
    ben.add_argument("--version", type=int, choices=[1, 2], default=1)
    ben.add_argument("--split-csv", nargs="+", default=[], metavar="FILE",
                     help="v1: s2_name,s1_name CSVs (a header row is skipped); the split comes from the file "
                          "name: train.csv, bigearthnet-val.csv, BigEarthNet_test.csv, validation.csv ... "
                          "(default: pair every S1 patch through its JSON into split 'all')")
    ben.add_argument("--metadata", help="v2: metadata.parquet (default: beside --s2-root)")
    ben.add_argument("--reference-maps", help="v2: Reference_Maps/ folder (adds mask.npy and corine.npy)")
    ben.add_argument("--exclude", nargs="+", default=[], metavar="FILE",
                     help="CSV/text files whose first column lists S2 patches to leave out "
                          "(e.g. the seasonal-snow and cloud/shadow lists)")
    _common(ben)

    ssl = sources.add_parser(
        "ssl4eo-s12", help="SSL4EO-S12 (S2 L1C or L2A + S1)",
        description="SSL4EO-S12 → one sample per (location, season): S2 bands then S1 VH, VV on the 264×264 grid.")
    ssl.add_argument("--root", required=True, help="folder holding s1/ and s2a/ or s2c/")
    ssl.add_argument("--product", choices=["l2a", "l1c"], default="l2a", help="S2 product (default: l2a)")
    _common(ssl)

    img = sources.add_parser(
        "imagefolder", help="RGB class folders (ImageNet layout)",
        description="root/<class>/<image> → shards of the original JPEG bytes and class indices.")
    img.add_argument("--root", required=True)
    img.add_argument("--split", default="train", help="split name of these images (default: train)")
    _common(img)
    from geodino.cli import shard_synthetic

    shard_synthetic.add_parser(sources, _common)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    # Split choices, band mappings, skipped or cleaned-up files are logged: show them.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from geodino.cli import shard_synthetic

    runners = {"bigearthnet": run_bigearthnet, "ssl4eo-s12": run_ssl4eo, "imagefolder": run_imagefolder,
               "synthetic": shard_synthetic.run}
    return runners[args.source](args)


def _write(args: argparse.Namespace, items: list, read: Any, card: Any, rejects: list, source: dict) -> int:
    from geodino.cli import CommandError
    from geodino.data.shards.writer import parse_part, write_shards
    from geodino.data.sources import PatchError

    if not items and not rejects:
        raise CommandError("nothing to convert: no patches found")
    try:
        summary = write_shards(args.out, items, read, card, shard_size=args.shard_size, workers=args.workers,
                               strict=args.strict, seed=args.seed, listing_rejects=rejects, source=source,
                               progress=not args.no_progress, part=parse_part(args.part))
    except PatchError as err:
        raise CommandError(f"--strict: {err}") from None
    print(format_summary(summary))
    rejected = sum(summary["rejected"].values())
    if rejected and not sum(summary["written"].values()):
        # Every patch refused is a wrong input (swapped roots, v2 data read as v1), not a conversion.
        raise CommandError(f"nothing converted: all {rejected} patches were rejected ({first_reject(summary['out'])}); "
                           f"every reason is in {summary['out']}/rejects.jsonl")
    return 0


def first_reject(out: str) -> str:
    """The first reason in a conversion's rejects.jsonl, shortened."""
    import json
    from pathlib import Path

    try:
        with open(Path(out) / "rejects.jsonl") as f:
            first = json.loads(f.readline())
    except (OSError, ValueError):
        return "no reasons were recorded"
    return f"the first: {first.get('patch', '?')}: {str(first.get('reason', first))[:200]}"


def format_summary(summary: dict[str, Any]) -> str:
    splits = sorted(set(summary["written"]) | set(summary["rejected"]))
    lines = [f"{split:>8}: {summary['written'].get(split, 0)} written, {summary['rejected'].get(split, 0)} rejected"
             for split in splits]
    shards = summary["shards"]
    lines.append(f"shards: {shards['written']} written, {shards['skipped']} already done, {shards['total']} in all; "
                 f"{summary['patches_per_s']} patches/s")
    if "part" in summary:
        state = "complete" if summary["complete"] else "waiting for the other parts"
        lines.append(f"part {summary['part']}: done; all parts: {summary['parts_done_shards']} shards ({state})")
    if any(summary["rejected"].values()):
        lines.append(f"rejected patches and reasons: {summary['out']}/rejects.jsonl")
    if "part" not in summary:
        lines.append(f"summary: {summary['out']}/summary.json")
    return "\n".join(lines)


def _excluded(files: list[str]) -> set[str]:
    from geodino.data.sources.bigearthnet import csv_names

    return {row[0] for path in files for row in csv_names(path)}


def run_bigearthnet(args: argparse.Namespace) -> int:
    from pathlib import Path

    from geodino.data.card import DatasetCard
    from geodino.data.sources import bigearthnet as ben

    # Options of the other version would be ignored: a v2 tree read as v1 (the default) is the usual cause.
    other = ({"--metadata": args.metadata, "--reference-maps": args.reference_maps} if args.version == 1
             else {"--split-csv": args.split_csv})
    given = [option for option, value in other.items() if value]
    if given:
        raise ValueError(f"{', '.join(given)}: for BigEarthNet v{3 - args.version}, but this conversion reads "
                         f"v{args.version} (--version {args.version})")
    if args.version == 1:
        items, rejects = ben.list_v1(args.s2_root, args.s1_root, args.split_csv)
    else:
        metadata = args.metadata or Path(args.s2_root).parent / "metadata.parquet"
        if not Path(metadata).is_file():
            raise FileNotFoundError(f"v2 needs metadata.parquet (--metadata); not found at {metadata}")
        items, rejects = ben.list_v2(args.s2_root, args.s1_root, metadata, args.reference_maps)
    excluded = _excluded(args.exclude)
    kept = [p for p in items if p.key not in excluded]
    if excluded:  # said and counted: the listed patches are left out on purpose, not lost
        print(f"--exclude: {len(items) - len(kept)} listed patch(es) left out "
              f"({len(excluded)} name(s) in {len(args.exclude)} list(s))", file=sys.stderr)
    source = {"kind": "bigearthnet", "version": args.version, "s2_root": str(args.s2_root),
              "s1_root": str(args.s1_root), "split_csvs": [str(p) for p in args.split_csv],
              "excluded_lists": [str(p) for p in args.exclude], "excluded_patches": len(items) - len(kept)}
    items = kept
    card = DatasetCard.load(f"bigearthnet-v{args.version}")
    return _write(args, items, ben.read_patch, card, rejects, source)


def run_ssl4eo(args: argparse.Namespace) -> int:
    from geodino.data.card import DatasetCard
    from geodino.data.sources import ssl4eo

    items, rejects = ssl4eo.list_samples(args.root, args.product)
    card = DatasetCard.load(f"ssl4eo-s12-{args.product}")
    return _write(args, items, ssl4eo.read_sample, card, rejects,
                  {"kind": "ssl4eo-s12", "product": args.product, "root": str(args.root)})


def run_imagefolder(args: argparse.Namespace) -> int:
    import dataclasses

    from geodino.data.card import DatasetCard
    from geodino.data.sources import imagefolder

    from geodino.data.shards.format import split_name

    # "validation", "training" ... become the shard split names every other source uses.
    items, classes = imagefolder.list_images(args.root, split_name(args.split) or args.split)
    card = dataclasses.replace(DatasetCard.load("imagenet"), classes=classes)
    return _write(args, items, imagefolder.read_item, card, [],
                  {"kind": "imagefolder", "root": str(args.root), "split": args.split})
