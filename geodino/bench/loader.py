"""Benchmark of the training data path: shard size and decode speed against the raw files and
against format-1 shards, and streaming against reading raw BigEarthNet folders.

One run measures, on the same patches:

- bytes per sample: the image members of a format-2 shard (bands in their stored dtype and size)
  and of a format-1 shard (one float32 stack on the 10 m grid), each against the raw GeoTIFF
  pixels of the patch (width × height × bytes per pixel of its 14 band files); whole-shard bytes
  per sample (tar headers, labels and metadata included) are reported too;
- decode rate per core: one process (one torch thread) reading, checking, decoding and batching
  every sample, best of ``--repeats`` passes: format-2 shards as training workers read them
  (bands left in their stored dtype for the device) and with the resampling done on the CPU;
  format-1 shards through the same reader; and the baseline, format-1 shards through the read
  path geodino had before format 2 (:func:`previous_decode_rate`);
- streaming: :func:`geodino.data.shards.stream.make_shard_loader` over the format-2 shards against
  :class:`geodino.data.sources.bigearthnet.BigEarthNetDataset` in a shuffled DataLoader (14
  GeoTIFFs, one label JSON and the resampling per patch), same workers and batch size, one pass
  including worker start-up.

Without ``--s2-root/--s1-root`` the patches are synthetic v1-format trees in the archives' layout
(S2 uint16 at 120/60/20 px, S1 float32 dB) written by the test fixture generator
(``tests/data/bigearthnet/data.py``, so a source checkout is needed) into a temporary folder.
Exposed as ``geodino bench loader``; also runnable as ``python -m geodino.bench.loader``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from geodino.bench import cpu_model
from geodino.config.schema import number

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "data" / "bigearthnet" / "data.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patches", type=number(int, ge=1), default=512, help="synthetic patches to make (default: 512)")
    parser.add_argument("--workers", type=number(int, ge=0), default=2, help="DataLoader workers on both sides (default: 2)")
    parser.add_argument("--batch-size", type=number(int, ge=1), default=32, help="samples per batch (default: 32)")
    parser.add_argument("--shard-size", type=number(int, ge=1), default=64, help="samples per shard when sharding (default: 64)")
    parser.add_argument("--shuffle-buffer", type=number(int, ge=0), default=100, help="shard loader shuffle buffer (default: 100)")
    parser.add_argument("--s2-root", help="existing BigEarthNet v1 S2 folder (instead of synthetic patches)")
    parser.add_argument("--s1-root", help="existing BigEarthNet v1 S1 folder (with --s2-root)")
    parser.add_argument("--repeats", type=number(int, ge=1), default=3, help="decode passes per format, best one counts (default: 3)")


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


def read_patch_float_stack(item: Any):
    """A patch as format 1 stored it: one float32 [14, 120, 120] stack (the baseline's shards)."""
    from geodino.data.shards.format import SampleParts, decode_sample, encode_sample
    from geodino.data.sources import bigearthnet as ben

    parts = ben.read_patch(item)
    raw = {"__key__": parts.key}
    raw.update({name.split(".", 1)[1]: data for name, data in encode_sample(parts)})
    sample = decode_sample(raw)
    meta = {k: v for k, v in parts.meta.items() if k not in ("groups", "grid")}
    return SampleParts(key=parts.key, image=sample["image"], meta=meta, labels19=parts.labels19,
                       labels43=parts.labels43)


def raw_pixel_bytes(patches: list) -> float:
    """Mean bytes of the raw pixels of a patch: width × height × itemsize over its band files."""
    import rasterio

    from geodino.data.sources import bigearthnet as ben

    total = 0
    for p in patches:
        for band in ben.BANDS:
            path = (Path(p.s1_dir) / f"{p.s1_name}_{band}.tif" if band in ben.S1_BANDS
                    else Path(p.s2_dir) / f"{p.key}_{band}.tif")
            with rasterio.open(path) as src:
                total += src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize
    return total / len(patches)


def shard_bytes(folder: str) -> tuple[float, float]:
    """Mean (image-member bytes, whole-shard bytes) per sample of a shard folder."""
    image = whole = samples = 0
    for tar_path in sorted(Path(folder).glob("*.tar")):
        whole += tar_path.stat().st_size
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                part = member.name.split(".", 1)[1]
                if part.startswith("image"):
                    image += member.size
                if part == "meta.json":
                    samples += 1
    return image / samples, whole / samples


def decode_rate(folder: str, repeats: int, batch_size: int, device_assembly: bool) -> float:
    """Samples per second of one core (in-process stream, one torch thread) reading, checking,
    decoding and batching every sample: what one DataLoader worker does for training. With
    ``device_assembly`` format-2 batches stay in their stored dtype (the training device resamples
    them); without, the worker converts and resamples each batch itself."""
    from geodino.data.shards.read import shard_counts
    from geodino.data.shards.format import expand_shards
    from geodino.data.shards.stream import make_shard_loader
    from geodino.utils import torch_threads

    paths = expand_shards(folder, split="all")
    steps = sum(shard_counts(paths).values()) // batch_size
    best = 0.0
    with torch_threads(1):
        for _ in range(repeats):
            loader = make_shard_loader(paths, batch_size=batch_size, num_workers=0, shuffle_buffer=1,
                                       steps_per_epoch=steps, resample=False, device_assembly=device_assembly)
            n, seconds = _time_pass(loader)
            best = max(best, n / seconds)
    return best


def previous_decode_rate(folder: str, repeats: int, batch_size: int) -> float:
    """The baseline "today" of the format-2 change: format-1 shards through the read path geodino
    had before it (webdataset's tar reader, ``np.load`` of every part, no checks), batched the
    same way, one process, one torch thread."""
    import io

    import torch
    import webdataset as wds

    from geodino.data.shards.format import expand_shards
    from geodino.utils import torch_threads

    paths = expand_shards(folder, split="all")

    def batches():
        batch = []
        for raw in wds.tarfile_samples([{"url": u} for u in paths]):
            sample = {"key": raw["__key__"], "meta": json.loads(raw["meta.json"]),
                      "image": torch.from_numpy(np.load(io.BytesIO(raw["image.npy"]), allow_pickle=False))}
            for part in ("labels19", "labels43"):
                if f"{part}.npy" in raw:
                    sample[part] = torch.from_numpy(np.load(io.BytesIO(raw[f"{part}.npy"]), allow_pickle=False))
            batch.append(sample)
            if len(batch) == batch_size:
                out = {"key": [b["key"] for b in batch]}
                for part in ("image", "labels19", "labels43"):
                    out[part] = torch.from_numpy(np.stack([b[part].numpy() for b in batch]))
                yield out
                batch = []

    best = 0.0
    with torch_threads(1):
        for _ in range(repeats):
            n, seconds = _time_pass(batches())
            best = max(best, n / seconds)
    return best


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
        card = DatasetCard.load("bigearthnet-v1")
        shards, shards_v1 = str(Path(tmp) / "shards"), str(Path(tmp) / "shards-format1")
        for out, read in ((shards, ben.read_patch), (shards_v1, read_patch_float_stack)):
            write_shards(out, patches, read, card, shard_size=args.shard_size, workers=max(1, args.workers),
                         progress=False)
        raw_bytes = raw_pixel_bytes(patches)
        (image_v2, whole_v2), (image_v1, whole_v1) = shard_bytes(shards), shard_bytes(shards_v1)
        rates = {name: decode_rate(folder, args.repeats, args.batch_size, device)
                 for name, folder, device in (("v2_device", shards, True), ("v2_cpu", shards, False),
                                              ("v1", shards_v1, False))}
        rates["previous"] = previous_decode_rate(shards_v1, args.repeats, args.batch_size)

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
        "raw_pixel_bytes_per_sample": round(raw_bytes),
        "image_bytes_per_sample": round(image_v2),
        "image_bytes_ratio_to_raw": round(image_v2 / raw_bytes, 3),
        "format1_image_bytes_per_sample": round(image_v1),
        "format1_image_bytes_ratio_to_raw": round(image_v1 / raw_bytes, 3),
        "shard_bytes_per_sample": round(whole_v2),
        "format1_shard_bytes_per_sample": round(whole_v1),
        "decode_samples_per_s_per_core": round(rates["v2_device"], 1),
        "decode_and_resample_samples_per_s_per_core": round(rates["v2_cpu"], 1),
        "format1_decode_samples_per_s_per_core": round(rates["v1"], 1),
        "previous_decode_samples_per_s_per_core": round(rates["previous"], 1),
        "decode_speedup_vs_previous": round(rates["v2_device"] / rates["previous"], 2),
        "decode_and_resample_speedup_vs_previous": round(rates["v2_cpu"] / rates["previous"], 2),
        "decode_speedup_vs_format1": round(rates["v2_device"] / rates["v1"], 2),
        "shards_samples_per_s": round(shard_n / shard_s, 1),
        "raw_samples_per_s": round(raw_n / raw_s, 1),
        "speedup": round((shard_n / shard_s) / (raw_n / raw_s), 2),
        "samples": shard_n,
        "patches": len(patches),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "synthetic": not args.s2_root,
        "cpu": cpu_model(),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    run(parser.parse_args())
