"""Benchmark of the training data path: streaming shards against reading raw BigEarthNet folders.

Both sides deliver the same batches of 14-band 120×120 float32 images with 19-class labels, with
the same number of DataLoader workers and batch size, timed over one pass of N patches including
worker start-up:

- shards: :func:`geodino.data.shards.stream.make_shard_loader` (tar reading, shuffling, ``.npy``
  decoding, collation);
- raw: :class:`geodino.data.sources.bigearthnet.BigEarthNetDataset` in a shuffled DataLoader
  (14 GeoTIFFs, one label JSON and the bilinear resampling per patch).

Without ``--s2-root/--s1-root`` the patches are synthetic v1-format trees written by the test
fixture generator (``tests/data/bigearthnet/data.py``, so a source checkout is needed) into a
temporary folder and sharded there. Exposed as ``geodino bench loader``; also runnable as
``python -m geodino.bench.loader``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "data" / "bigearthnet" / "data.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patches", type=int, default=512, help="synthetic patches to make (default: 512)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers on both sides (default: 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per batch (default: 32)")
    parser.add_argument("--shard-size", type=int, default=64, help="samples per shard when sharding (default: 64)")
    parser.add_argument("--shuffle-buffer", type=int, default=100, help="shard loader shuffle buffer (default: 100)")
    parser.add_argument("--s2-root", help="existing BigEarthNet v1 S2 folder (instead of synthetic patches)")
    parser.add_argument("--s1-root", help="existing BigEarthNet v1 S1 folder (with --s2-root)")
    parser.add_argument("--shards", help="existing shards of the same patches (default: shard them into a temp folder)")


def _fixture_module():
    if not FIXTURES.is_file():
        raise FileNotFoundError(f"synthetic patches need the fixture generator {FIXTURES} (a source checkout); "
                                "or pass --s2-root/--s1-root")
    spec = importlib.util.spec_from_file_location("geodino_bigearthnet_fixture", FIXTURES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _time_pass(batches) -> tuple[int, float]:
    start = time.perf_counter()
    samples = sum(len(batch["key"]) for batch in batches)
    return samples, time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from geodino.data.card import DatasetCard
    from geodino.data.shards.stream import make_shard_loader
    from geodino.data.shards.writer import write_shards
    from geodino.data.sources import bigearthnet as ben

    if bool(args.s2_root) != bool(args.s1_root):
        raise ValueError("--s2-root and --s1-root go together")
    with tempfile.TemporaryDirectory(prefix="geodino-bench-loader-") as tmp:
        if args.s2_root:
            s2_root, s1_root = args.s2_root, args.s1_root
        else:
            tree = _fixture_module().write_v1(Path(tmp) / "raw", patches=args.patches, splits=False)
            s2_root, s1_root = tree["s2_root"], tree["s1_root"]
        patches, _ = ben.list_v1(s2_root, s1_root)
        patches = patches[: args.patches]
        shards = args.shards
        if shards is None:
            shards = str(Path(tmp) / "shards")
            write_shards(shards, patches, ben.read_patch, DatasetCard.load("bigearthnet-v1"),
                         shard_size=args.shard_size, workers=max(1, args.workers), progress=False)

        steps = len(patches) // args.batch_size
        if steps < 1:
            raise ValueError(f"{len(patches)} patches make no batch of {args.batch_size}")
        stream = make_shard_loader(shards, batch_size=args.batch_size, num_workers=args.workers,
                                   shuffle_buffer=args.shuffle_buffer, steps_per_epoch=steps, split="all")
        shard_n, shard_s = _time_pass(stream)
        raw = DataLoader(ben.BigEarthNetDataset(patches), batch_size=args.batch_size, shuffle=True,
                         num_workers=args.workers, drop_last=True)
        raw_n, raw_s = _time_pass(raw)

    result = {
        "bench": "loader",
        "shards_samples_per_s": round(shard_n / shard_s, 1),
        "raw_samples_per_s": round(raw_n / raw_s, 1),
        "speedup": round((shard_n / shard_s) / (raw_n / raw_s), 2),
        "samples": shard_n,
        "patches": len(patches),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "synthetic": not args.s2_root,
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args())
