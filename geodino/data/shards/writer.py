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
import contextlib
import functools
import itertools
import hashlib
import json
import logging
import multiprocessing
import random
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from geodino.data.card import CardError, DatasetCard
from geodino.data.shards.format import (
    CARD_FILE,
    INDEX_FILE,
    REJECTS_FILE,
    SUMMARY_FILE,
    SampleParts,
    add_members,
    card_spec,
    encode_sample,
    shard_name,
)
from geodino.data.shards.format import PatchError
from geodino.utils import atomic_path, remove_stale_temps, write_json_atomic, write_text_atomic

INDEX_FORMAT = "geodino-shards/2"  # 2: band groups in their stored dtype and size

log = logging.getLogger(__name__)
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
    split_of: dict[str, str] = {}
    for item in items:
        # A sample in two splits is leakage between training and evaluation, not a choice.
        if split_of.setdefault(item.key, item.split) != item.split:
            raise ValueError(f"{item.key!r} is listed in both the {split_of[item.key]!r} and the {item.split!r} split")
        by_split.setdefault(item.split, []).append(item)
    plan = []
    for split in sorted(by_split):
        ordered = sorted(by_split[split], key=lambda i: i.key)
        keys = [i.key for i in ordered]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise ValueError(f"split {split!r} lists {dup!r} more than once (two sources of one sample key)")
        random.Random(f"{seed}:{split}").shuffle(ordered)
        for n, start in enumerate(range(0, len(ordered), shard_size)):
            plan.append(PlannedShard(shard_name(split, n), split, tuple(ordered[start:start + shard_size])))
    return plan


def _read_encoded(read: Callable[[Any], SampleParts], grid: tuple[int, int] | None,
                  item: Any) -> list[tuple[str, bytes]] | PatchError:
    # Runs in a worker: a rejected item comes back as a value so the pool keeps going.
    try:
        parts = read(item)
        # Checked now, not by every later reader: a conversion that "succeeds" into shards each
        # command then refuses helps nobody.
        if grid is not None and parts.grid is not None and tuple(parts.grid) != tuple(grid):
            raise PatchError(parts.key, str(parts.meta.get("path", "")),
                             f"image is {parts.grid[0]}x{parts.grid[1]} px, not the {grid[0]}x{grid[1]} grid of "
                             "the dataset card")
        return encode_sample(parts)
    except PatchError as err:
        return err


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core already; avoid oversubscription


def _results(read: Callable, items: list[Any], workers: int,
             grid: tuple[int, int] | None = None) -> Iterator[list[tuple[str, bytes]] | PatchError]:
    """Encoded samples (or rejects, among them samples off the card's ``grid``) in item order."""
    task = functools.partial(_read_encoded, read, grid)
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
    """Keep the statistics that ``geodino stats`` measured on this folder across re-runs: the
    card of an earlier run wins when it has statistics and the same bands."""
    path = out / CARD_FILE
    if not path.is_file():
        return card
    try:
        old = DatasetCard.load(path)
    except CardError as err:
        log.warning("%s cannot be read (%s): writing a fresh card", path, err)
        return card
    if old.band_names != card.band_names or old.mean is None:
        return card
    if card.mean is not None and "statistics_from" not in old.extra:
        return card  # the source's own statistics, never measured here: take the current ones
    kept = card.with_statistics(old.mean, old.std or [])
    if "statistics_from" in old.extra:
        kept.extra["statistics_from"] = old.extra["statistics_from"]
    log.info("kept the band statistics of the existing %s", path)
    return kept


def parse_part(text: str) -> tuple[int, int]:
    """``"I/N"`` (0-based I) → ``(I, N)``."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--part {text!r}: expected I/N, e.g. 0/4 for the first of 4 parts") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--part {text!r}: I must be in 0..N-1 and N >= 1")
    return i, n


def part_index_name(part: tuple[int, int]) -> str:
    return f"index.part-{part[0]:04d}-of-{part[1]:04d}.json"


@contextlib.contextmanager
def _folder_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on ``out/.index.lock`` (POSIX ``flock``; on a filesystem without locks, no
    lock and a warning: parts then should not finish at the same moment)."""
    import fcntl

    with open(out / ".index.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as err:
            log.warning("cannot lock %s (%s): merging part indexes without a lock", handle.name, err)
        try:
            yield
        finally:
            try:
                fcntl.flock(handle, fcntl.LOCK_UN)
            except OSError:
                pass


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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
    part: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """Convert ``items`` into shards under ``out`` and return the summary (also ``summary.json``).

    ``read`` must be picklable (a module-level function or a ``functools.partial`` of one) when
    ``workers > 1``. ``listing_rejects`` are problems found while listing the dataset (e.g. an S1
    patch without metadata), logged with the others.

    ``part=(I, N)`` writes only the shards ``j`` of the plan with ``j % N == I``, so N jobs (a
    SLURM array, say) fill one folder together. Each part records its shards in its own
    ``index.part-*.json``; every part merges all part files into ``index.json``, which says
    ``complete`` once every part has finished and is then byte-identical to the index of a
    one-job conversion.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if strict and listing_rejects:
        r = listing_rejects[0]
        raise PatchError(r["patch"], r["file"], r["reason"])
    part_i, parts = part
    plan = plan_shards(items, shard_size, seed)
    mine = [s for j, s in enumerate(plan) if j % parts == part_i]
    part_file = out / part_index_name(part) if parts > 1 else None

    # Only this part's files: other parts may be writing theirs in the same folder right now.
    removed = remove_stale_temps(out, [s.name for s in mine] + ([] if parts > 1 else [
        INDEX_FILE, CARD_FILE, REJECTS_FILE, SUMMARY_FILE]))
    if removed:
        log.info("removed %d temporary file(s) left by an earlier, killed conversion in %s", len(removed), out)

    digests = {s.name: s.digest for s in plan}
    plan_digest = hashlib.sha1("\n".join(f"{s.name}:{s.digest}" for s in plan).encode()).hexdigest()
    previous: dict[str, dict[str, Any]] = {}
    for path in [out / INDEX_FILE] + ([part_file] if part_file else []):
        old_index = _load_json(path) or {}
        if old_index.get("format", INDEX_FORMAT) != INDEX_FORMAT:
            # Shards of another format version are rewritten, not relabelled as this one.
            log.info("%s was written in format %s: rewriting every shard as %s", path, old_index["format"],
                     INDEX_FORMAT)
            continue
        previous.update({e["name"]: e for e in (old_index.get("shards") or [])})
    entries: dict[str, dict[str, Any]] = {}
    pending: list[PlannedShard] = []
    for shard in mine:
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
        "planned_shards": len(plan),
        "complete": False,
    }

    def merged_entries() -> tuple[dict[str, dict[str, Any]], bool]:
        """Every finished shard (this part's and the other parts'), and whether all parts are done."""
        if part_file is None:
            return dict(entries), len(entries) == len(plan)
        found: dict[str, dict[str, Any]] = {}
        done = 0
        for i in range(parts):
            other = _load_json(out / part_index_name((i, parts))) or {}
            if other.get("plan") != plan_digest:
                continue  # left by a conversion of other items, seed or shard size: not ours
            found.update({e["name"]: e for e in other.get("shards", []) if digests.get(e["name"]) == e.get("plan")})
            done += bool(other.get("complete"))
        found.update(entries)
        return found, done == parts and all(s.name in found for s in plan)

    def save_index(finished: bool) -> bool:
        # Parts finishing together must not overwrite a newer merge with an older one.
        with _folder_lock(out) if part_file is not None else contextlib.nullcontext():
            if part_file is not None:
                write_json_atomic(part_file, {"part": list(part), "plan": plan_digest, "complete": finished,
                                              "shards": [entries[s.name] for s in mine if s.name in entries]})
            return _write_index()

    def _write_index() -> bool:
        found, complete = merged_entries()
        shards = [found[s.name] for s in plan if s.name in found]
        splits: dict[str, dict[str, int]] = {}
        for e in shards:
            agg = splits.setdefault(e["split"], {"shards": 0, "samples": 0})
            agg["shards"] += 1
            agg["samples"] += e["samples"]
        write_json_atomic(out / INDEX_FILE, {**index, "complete": complete, "splits": splits,
                                             "shards": shards, "card": card.to_dict()})
        if complete:
            all_rejects = list(listing_rejects) + [r for s in plan for r in found[s.name]["rejected"]]
            write_text_atomic(out / REJECTS_FILE, "".join(json.dumps(r) + "\n" for r in all_rejects))
        return complete

    todo = [item for shard in pending for item in shard.items]
    bar = tqdm(total=len(todo), unit="patch", desc="shard" if parts == 1 else f"shard part {part_i}/{parts}",
               disable=not progress, smoothing=0.1)
    results = _results(read, todo, workers, card_spec(card).grid)
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
                save_index(finished=False)
                last_save = time.perf_counter()
    finally:
        results.close()  # stops the worker pool if we leave early
        bar.close()
    complete = save_index(finished=True)

    found, _ = merged_entries()
    elapsed = time.perf_counter() - started
    written: dict[str, int] = {}
    rejected_by_split: dict[str, int] = {}
    for s in mine:
        written[s.split] = written.get(s.split, 0) + entries[s.name]["samples"]
        for r in entries[s.name]["rejected"]:
            rejected_by_split[r["split"]] = rejected_by_split.get(r["split"], 0) + 1
    if part_i == 0:  # listing problems are the same for every part: count them once
        for r in listing_rejects:
            rejected_by_split[r["split"]] = rejected_by_split.get(r["split"], 0) + 1
    summary = {
        "out": str(out),
        "written": written,
        "rejected": rejected_by_split,
        "shards": {"total": len(mine), "written": len(pending), "skipped": len(mine) - len(pending)},
        "elapsed_s": round(elapsed, 3),
        "patches_per_s": round(len(todo) / elapsed, 2) if elapsed > 0 else None,
        "complete": complete,
    }
    if parts > 1:
        summary["part"] = f"{part_i}/{parts}"
        summary["parts_done_shards"] = f"{len(found)} of {len(plan)}"
    write_json_atomic(out / (SUMMARY_FILE if parts == 1 else f"summary.part-{part_i:04d}-of-{parts:04d}.json"),
                      summary)
    return summary
