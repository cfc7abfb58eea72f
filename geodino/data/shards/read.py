"""Read shards sample by sample, wherever they are.

Everything that reads shards (training streams, statistics, inspection, evaluation, fine-tuning)
goes through :func:`raw_samples`, and hands bad samples to a
:class:`~geodino.data.bad.BadSamplePolicy`:

- :func:`raw_samples` groups a shard's tar members into samples (``{"__key__", "__url__",
  "<part>": bytes}``) through :func:`geodino.data.shards.remote.iter_tar_members`, so a local
  path, ``pipe:COMMAND``, ``http(s)://`` and fsspec URLs read the same way. A truncated, garbage or
  non-tar shard raises :class:`ShardReadError` naming the URL; so does a shard that holds fewer
  samples than ``index.json`` says (a tar cut exactly between two samples is a valid tar, and the
  count is the only way to notice).
- :func:`iter_samples` decodes and checks them in this process; a bad sample or unreadable shard
  goes to the policy (``data.bad_samples``: stop naming it, or record and skip it).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Iterator

from geodino.data.bad import BadSamplePolicy
from geodino.data.shards.format import BadSample, SampleSpec, decode_sample, is_remote, read_index, shard_file_name
from geodino.data.shards.remote import RemoteError, ShardReadError, iter_tar_members

log = logging.getLogger(__name__)


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
