"""Read shards sample by sample, wherever they are, and decide what a bad sample does.

Everything that reads shards (training streams, statistics, inspection, evaluation, fine-tuning)
goes through :func:`raw_samples` and :class:`BadSamplePolicy`:

- :func:`raw_samples` groups a shard's tar members into samples (``{"__key__", "__url__",
  "<part>": bytes}``) through :func:`geodino.data.shards.remote.iter_tar_members`, so a local
  path, ``pipe:COMMAND``, ``http(s)://`` and fsspec URLs read the same way. A truncated, garbage or
  non-tar shard raises :class:`ShardReadError` naming the URL; so does a shard that holds fewer
  samples than ``index.json`` says (a tar cut exactly between two samples is a valid tar, and the
  count is the only way to notice).
- :class:`BadSamplePolicy` applies ``data.bad_samples``: ``error`` (the default) stops at the first
  bad sample with one line naming shard, key and reason; ``skip`` records each bad sample (and each
  unreadable shard) and goes on, until more than ``max_bad_fraction`` of the data is bad.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from geodino.data.shards.format import BadSample, SampleSpec, decode_sample, is_remote, read_index, shard_file_name
from geodino.data.shards.remote import RemoteError, ShardReadError, iter_tar_members

log = logging.getLogger(__name__)
POLICIES = ("error", "skip")


class BadDataError(ValueError):
    """The data cannot be used as asked: a bad sample under ``bad_samples: error``, or too many."""


def shard_counts(paths: Iterable[str]) -> dict[str, int] | None:
    """Sample count of every shard from the ``index.json`` beside it, or None when a folder (or a
    remote location) has none."""
    by_folder: dict[str, list[str]] = {}
    for p in paths:
        folder = p[: p.rindex(shard_file_name(p))] if is_remote(p) else (os.path.dirname(p) or ".")
        by_folder.setdefault(folder, []).append(p)
    counts: dict[str, int] = {}
    for folder, urls in by_folder.items():
        index = read_index(urls[0] if is_remote(urls[0]) else folder)
        if index is None:
            return None
        known = {s["name"]: s["samples"] for s in index["shards"]}
        unknown = [u for u in urls if shard_file_name(u) not in known]
        if unknown:
            raise ValueError(f"the index.json beside {unknown[0]} does not list it ({len(unknown)} unlisted)")
        for u in urls:
            counts[u] = known[shard_file_name(u)]
    return counts


def raw_samples(url: str, expected: int | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one shard as webdataset-style dicts of member bytes, in tar order.

    ``expected`` is the shard's sample count from ``index.json``; reading fewer raises
    :class:`ShardReadError` after the last sample read.
    """
    current: dict[str, Any] | None = None
    count = 0
    for name, data in iter_tar_members(url):
        base = os.path.basename(name)
        if "." not in base:
            raise ShardReadError(f"{url}: member {name!r} has no '<key>.<part>' name: not a geodino shard")
        key, part = base.split(".", 1)
        prefix = name[: len(name) - len(base)] + key
        if current is None or current["__key__"] != prefix:
            if current is not None:
                count += 1
                yield current
            current = {"__key__": prefix, "__url__": url}
        current[part] = data
    if current is not None:
        count += 1
        yield current
    if expected is not None and count < expected:
        raise ShardReadError(f"{url}: {count} of the {expected} samples index.json lists "
                             "(the shard was cut short: re-run the conversion that wrote it)")


@dataclass
class BadSamplePolicy:
    """What a bad sample does: ``error`` raises :class:`BadDataError`; ``skip`` counts it (an
    unreadable shard as the samples it held), appends it to ``log_path`` (JSON lines) and raises
    only once more than ``max_fraction`` of ``total`` samples were lost. ``known`` holds the
    samples already recorded (a resumed run does not count them twice); ``context`` (e.g. the
    rank) goes into every record; ``hint`` ends an ``error``'s message (how the command at hand
    would skip such samples, when it can)."""

    mode: str = "error"
    max_fraction: float = 0.001
    total: int | None = None
    log_path: str | Path | None = None
    context: dict[str, Any] = field(default_factory=dict)
    count: int = 0
    known: set[str] = field(default_factory=set)
    hint: str = ""

    def __post_init__(self) -> None:
        if self.mode not in POLICIES:
            raise ValueError(f"data.bad_samples must be one of {POLICIES}, not {self.mode!r}")
        if self.log_path is not None and Path(self.log_path).is_file():
            rank = self.context.get("rank")
            for line in Path(self.log_path).read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                ident = _record_id(record)
                # Every rank's records are known (a resampled shard may reach another rank), but
                # each rank counts its own against the limit, as before the interruption.
                if ident not in self.known and record.get("rank") == rank:
                    self.count += int(record.get("samples", 1))
                self.known.add(ident)

    @property
    def limit(self) -> int | None:
        return None if self.total is None else int(self.max_fraction * self.total)

    def handle(self, record: dict[str, Any]) -> None:
        """Apply the policy to one bad sample's record (``{"shard", "key", "reason"}``)."""
        if record.get("key") is None:  # the whole shard: its reason names it already
            where = f"unreadable shard: {record.get('reason')}"
        else:
            where = f"bad sample: {record.get('shard')}: sample {record.get('key')}: {record.get('reason')}"
        if self.mode == "error":
            raise BadDataError(f"{where} ({self.hint})" if self.hint else where)
        ident = _record_id(record)
        if ident in self.known:
            return
        self.known.add(ident)
        self.count += int(record.get("samples", 1))
        log.warning("skipped (%d samples so far): %s", self.count, where)
        if self.log_path is not None:
            with open(self.log_path, "a") as f:
                f.write(json.dumps({**self.context, **record}) + "\n")
        if self.limit is not None and self.count > self.limit:
            raise BadDataError(f"{self.count} bad samples, more than data.max_bad_fraction={self.max_fraction} "
                               f"of {self.total}; see {self.log_path or 'the log'}")


def sample_id(url: str | None, key: str | None) -> str:
    """A sample's identity across runs: its shard (local paths made absolute, so a resumed run that
    spells the folder differently still knows it) and its key."""
    if url is not None and not is_remote(url):
        url = os.path.abspath(url)
    return f"{url}::{key}"


def _record_id(record: dict[str, Any]) -> str:
    return sample_id(record.get("shard"), record.get("key"))


def shard_error_record(url: str, err: Exception, lost: int = 1) -> dict[str, Any]:
    """A whole shard that could not be read; ``lost`` is how many samples that cost."""
    return {"shard": url, "key": None, "reason": str(err), "samples": lost}


def iter_samples(urls: Iterable[str], spec: SampleSpec | None = None, policy: BadSamplePolicy | None = None,
                 expected: dict[str, int] | None = None) -> Iterator[dict[str, Any]]:
    """Decoded, checked samples of the given shards, in order, in this process (statistics,
    inspection, evaluation; training streams use :mod:`geodino.data.shards.stream`).

    Without a ``policy`` any bad sample or unreadable shard raises (one line, naming it). Each
    shard's sample count is checked against ``expected`` (default: the ``index.json`` beside it).
    """
    policy = policy or BadSamplePolicy()
    urls = list(urls)
    if expected is None:
        expected = shard_counts(urls) or {}
    for url in urls:
        try:
            for raw in raw_samples(url, expected.get(url)):
                try:
                    yield decode_sample(raw, spec)
                except BadSample as err:
                    policy.handle(err.record())
        except (ShardReadError, RemoteError) as err:  # damaged, or unreachable after the retries
            policy.handle(shard_error_record(url, err))
