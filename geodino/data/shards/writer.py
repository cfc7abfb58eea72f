"""Write a dataset's items into webdataset shards: atomically, resumably, logging rejects.

The assignment of items to shards is a pure function of the item keys, ``shard_size`` and
``seed`` (per split: sort the keys, shuffle them with a seeded RNG so that a shard mixes tiles or
classes, cut into chunks). A shard is written to a temporary file and renamed when complete, and
``index.json`` records finished shards as the run goes; a re-run therefore skips every recorded
shard whose tar exists and whose planned key list is unchanged, and rewrites the others byte for
byte.

Items are read (and encoded) in worker processes; the main process only appends bytes to tars.
An item that fails with :class:`~geodino.data.sources.PatchError` is skipped and logged to
``rejects.jsonl``, or re-raised with ``strict=True``.
"""

from __future__ import annotations

import collections
import functools
import itertools
import hashlib
import json
import multiprocessing
import random
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from geodino.data.card import DatasetCard
from geodino.data.shards.format import (
    CARD_FILE,
    INDEX_FILE,
    REJECTS_FILE,
    SUMMARY_FILE,
    SampleParts,
    add_members,
    encode_sample,
    read_index,
    shard_name,
)
from geodino.data.shards.format import PatchError
from geodino.utils import atomic_path, write_json_atomic, write_text_atomic

INDEX_FORMAT = "geodino-shards/1"
INDEX_SAVE_EVERY_S = 10.0


class Item(Protocol):
    key: str
    split: str


@dataclass(frozen=True)
class PlannedShard:
    name: str
    split: str
    items: tuple[Any, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha1("\n".join(i.key for i in self.items).encode()).hexdigest()


def plan_shards(items: Iterable[Item], shard_size: int, seed: int = 0) -> list[PlannedShard]:
    """Deterministic assignment of items to ``<split>-NNNNNN.tar`` shards."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, not {shard_size}")
    by_split: dict[str, list[Any]] = {}
    for item in items:
        by_split.setdefault(item.split, []).append(item)
    plan = []
    for split in sorted(by_split):
        ordered = sorted(by_split[split], key=lambda i: i.key)
        keys = [i.key for i in ordered]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ValueError(f"split {split!r} lists {dup!r} more than once")
        random.Random(f"{seed}:{split}").shuffle(ordered)
        for n, start in enumerate(range(0, len(ordered), shard_size)):
            plan.append(PlannedShard(shard_name(split, n), split, tuple(ordered[start:start + shard_size])))
    return plan


def _read_encoded(read: Callable[[Any], SampleParts], item: Any) -> list[tuple[str, bytes]] | PatchError:
    # Runs in a worker: a rejected item comes back as a value so the pool keeps going.
    try:
        return encode_sample(read(item))
    except PatchError as err:
        return err


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core already; avoid oversubscription


def _results(read: Callable, items: list[Any], workers: int) -> Iterator[list[tuple[str, bytes]] | PatchError]:
    """Encoded samples (or rejects) in item order."""
    task = functools.partial(_read_encoded, read)
    if workers <= 1:
        yield from map(task, items)
        return
    # spawn, not fork: the parent may already run OpenMP threads (torch), which fork can deadlock.
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        # A bounded window of submitted items: Pool.imap would read ahead without limit and pile up
        # encoded samples in memory whenever writing is slower than reading.
        todo = iter(items)
        window = collections.deque(pool.apply_async(task, (i,)) for i in itertools.islice(todo, 8 * workers))
        while window:
            result = window.popleft().get()
            for item in itertools.islice(todo, 1):
                window.append(pool.apply_async(task, (item,)))
            yield result


def _card_for_output(card: DatasetCard, out: Path) -> DatasetCard:
    """Keep statistics already computed for this folder (``geodino stats``) across re-runs."""
    path = out / CARD_FILE
    if path.is_file() and card.mean is None:
        old = DatasetCard.load(path)
        if old.band_names == card.band_names and old.mean is not None:
            return card.with_statistics(old.mean, old.std or [])
    return card


def write_shards(
    out: str | Path,
    items: Sequence[Item],
    read: Callable[[Any], SampleParts],
    card: DatasetCard,
    *,
    shard_size: int = 256,
    workers: int = 1,
    strict: bool = False,
    seed: int = 0,
    listing_rejects: Sequence[dict[str, str]] = (),
    source: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert ``items`` into shards under ``out`` and return the summary (also ``summary.json``).

    ``read`` must be picklable (a module-level function or a ``functools.partial`` of one) when
    ``workers > 1``. ``listing_rejects`` are problems found while listing the dataset (e.g. an S1
    patch without metadata), logged with the others.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if strict and listing_rejects:
        r = listing_rejects[0]
        raise PatchError(r["patch"], r["file"], r["reason"])

    plan = plan_shards(items, shard_size, seed)
    previous = {e["name"]: e for e in (read_index(out) or {}).get("shards", [])}
    entries: dict[str, dict[str, Any]] = {}
    pending: list[PlannedShard] = []
    for shard in plan:
        old = previous.get(shard.name)
        if old is not None and old.get("plan") == shard.digest and (out / shard.name).is_file():
            entries[shard.name] = old
        else:
            pending.append(shard)

    card = _card_for_output(card, out)
    card.save(out / CARD_FILE)
    index = {
        "format": INDEX_FORMAT,
        "dataset": card.name,
        "bands": card.band_names,
        "shard_size": shard_size,
        "seed": seed,
        "source": source or {},
        "complete": False,
    }

    def save_index(complete: bool) -> None:
        shards = [entries[s.name] for s in plan if s.name in entries]
        splits: dict[str, dict[str, int]] = {}
        for e in shards:
            agg = splits.setdefault(e["split"], {"shards": 0, "samples": 0})
            agg["shards"] += 1
            agg["samples"] += e["samples"]
        write_json_atomic(out / INDEX_FILE, {**index, "complete": complete, "splits": splits,
                                             "shards": shards, "card": card.to_dict()})

    todo = [item for shard in pending for item in shard.items]
    bar = tqdm(total=len(todo), unit="patch", desc="shard", disable=not progress, smoothing=0.1)
    results = _results(read, todo, workers)
    last_save = time.perf_counter()
    try:
        for shard in pending:
            rejected: list[dict[str, str]] = []
            with atomic_path(out / shard.name) as tmp, tarfile.open(tmp, "w") as tar:
                for item in shard.items:
                    result = next(results)
                    bar.update(1)
                    if isinstance(result, PatchError):
                        if strict:
                            raise result
                        rejected.append({"patch": result.patch, "split": shard.split,
                                         "file": result.file, "reason": result.reason})
                        bar.set_postfix(rejected=sum(len(e["rejected"]) for e in entries.values()) + len(rejected))
                        continue
                    add_members(tar, result)
            entries[shard.name] = {"name": shard.name, "split": shard.split,
                                   "samples": len(shard.items) - len(rejected),
                                   "plan": shard.digest, "rejected": rejected}
            # Record progress for a resume, at most every few seconds (the index of a large
            # conversion lists thousands of shards); a shard finished but not yet recorded is
            # simply rewritten, identically, by the next run.
            if time.perf_counter() - last_save > INDEX_SAVE_EVERY_S:
                save_index(complete=False)
                last_save = time.perf_counter()
    finally:
        results.close()  # stops the worker pool if we leave early
        bar.close()
    save_index(complete=True)

    all_rejects = list(listing_rejects) + [r for s in plan for r in entries[s.name]["rejected"]]
    write_text_atomic(out / REJECTS_FILE, "".join(json.dumps(r) + "\n" for r in all_rejects))
    elapsed = time.perf_counter() - started
    written: dict[str, int] = {}
    rejected_by_split: dict[str, int] = {}
    for s in plan:
        written[s.split] = written.get(s.split, 0) + entries[s.name]["samples"]
    for r in all_rejects:
        rejected_by_split[r["split"]] = rejected_by_split.get(r["split"], 0) + 1
    summary = {
        "out": str(out),
        "written": written,
        "rejected": rejected_by_split,
        "shards": {"total": len(plan), "written": len(pending), "skipped": len(plan) - len(pending)},
        "elapsed_s": round(elapsed, 3),
        "patches_per_s": round(len(todo) / elapsed, 2) if elapsed > 0 else None,
    }
    write_json_atomic(out / SUMMARY_FILE, summary)
    return summary

