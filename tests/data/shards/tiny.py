"""Tiny shard folders written through the real writer (3 bands: two uint16 optical bands stored at half
size, one float32 dB band), for tests that then damage them, and an HTTP server for a folder."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from geodino.data.card import Band, DatasetCard
from geodino.data.shards.format import SampleParts, group_bands

BANDS = ("B02", "B03", "VV")
GRID = 8


@dataclass(frozen=True)
class TinyItem:
    key: str
    split: str
    seed: int
    nan: bool = False
    size: int = GRID


def tiny_card() -> DatasetCard:
    bands = [Band("B02", "s2", "DN", 10), Band("B03", "s2", "DN", 10), Band("VV", "s1", "dB", 10)]
    return DatasetCard("tiny", bands, mean=[1000.0, 1000.0, -12.0], std=[300.0, 300.0, 3.0], classes=["a", "b"],
                       extra={"grid": {"height": GRID, "width": GRID, "resolution_m": 10}})


def read_tiny(item: TinyItem) -> SampleParts:
    """Two uint16 optical bands at half size (resampled when decoded) and one float32 dB band."""
    rng = np.random.default_rng(item.seed)
    half = item.size // 2
    optical = [(b, rng.integers(200, 4000, (half, half)).astype(np.uint16)) for b in BANDS[:2]]
    sar = rng.normal(-12.0, 3.0, (item.size, item.size)).astype(np.float32)
    if item.nan:
        sar[:] = np.nan
    groups = group_bands(optical + [("VV", sar)])
    meta = {"bands": list(BANDS), "split": item.split, "source": "tiny"}
    return SampleParts(key=item.key, image=groups, meta=meta, grid=(item.size, item.size), label=item.seed % 2)


def tiny_items(train: int = 8, val: int = 4, **special: dict) -> list[TinyItem]:
    items = [TinyItem(f"s{i:03d}", "train", i) for i in range(train)]
    items += [TinyItem(f"v{i:03d}", "val", 100 + i) for i in range(val)]
    return [TinyItem(**{**it.__dict__, **special.get(it.key, {})}) for it in items]


def write_tiny(out: Path, items: list[TinyItem] | None = None, shard_size: int = 2, **kw) -> Path:
    from geodino.data.shards.writer import write_shards

    write_shards(out, items or tiny_items(), read_tiny, tiny_card(), shard_size=shard_size, progress=False, **kw)
    return out


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """``python -m http.server`` on 127.0.0.1 (a free port) serving ``folder``; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                             "--directory", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 41234 (...)": bound already
        port = int(re.search(r"port (\d+)", line).group(1))
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield base
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
