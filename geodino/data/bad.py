"""Bad samples, whatever the source: what ``data.bad_samples`` does with one, and how workers report them.

- :class:`BadSamplePolicy` applies ``data.bad_samples``: ``error`` (the default) stops at the first
  bad sample with one line naming where it is (shard or file), its key and the reason; ``skip``
  records each bad sample (and each unreadable shard) in ``bad_samples.jsonl`` and goes on, until
  more than ``max_bad_fraction`` of the data is bad.
- A record is ``{"shard" | "file": where, "key": key, "reason": text}``: shards name the tar a
  sample sits in, image folders the image file itself.
- Loader workers cannot raise into the training loop's policy; their records travel with the batch
  under :data:`BAD` and the main process hands them to the policy (:func:`collate_reporting_bad`
  for map-style datasets, the shard stream for shards).

Like :mod:`geodino.data.batches`, this is ground floor: it imports nothing else of geodino when
loaded (:func:`sample_id` asks the shard reader, when called, which locations are URLs).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
POLICIES = ("error", "skip")
BAD = "__bad_samples__"  # records of bad samples travelling with a batch from a worker


class SampleError(ValueError):
    """One sample that cannot be used: where it is (``container``: a shard, or here a file), its key
    and the reason. Raised where the sample is read (possibly in a loader worker), turned into a
    record for the policy."""

    container = "file"

    def __init__(self, where: str, key: str, reason: str) -> None:
        super().__init__(f"{where}: sample {key}: {reason}")
        self.where, self.key, self.reason = where, key, reason

    def __reduce__(self):  # keep the fields when crossing a process boundary
        return (type(self), (self.where, self.key, self.reason))

    def record(self) -> dict[str, str]:
        return {self.container: self.where, "key": self.key, "reason": self.reason}


class BadDataError(ValueError):
    """The data cannot be used as asked: a bad sample under ``bad_samples: error``, or too many."""


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
                ident = record_id(record)
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
            where = f"bad sample: {container(record)}: sample {record.get('key')}: {record.get('reason')}"
        if self.mode == "error":
            raise BadDataError(f"{where} ({self.hint})" if self.hint else where)
        ident = record_id(record)
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


def sample_id(where: str | None, key: str | None) -> str:
    """A sample's identity across runs: its shard or file (local paths made absolute, so a resumed
    run that spells the folder differently still knows it) and its key."""
    from geodino.data.shards.remote import is_remote  # URLs and pipe: commands stay as written

    if where is not None and not is_remote(where):
        where = os.path.abspath(where)
    return f"{where}::{key}"


def container(record: dict[str, Any]) -> str | None:
    """The shard or file a bad-sample record names."""
    return record.get("shard", record.get("file"))


def record_id(record: dict[str, Any]) -> str:
    return sample_id(container(record), record.get("key"))


def pretrain_policy(data: Any, total: int, rank: int, out_dir: str | Path) -> BadSamplePolicy:
    """The policy of a pretraining run's ``data`` section over ``total`` samples per epoch; under
    ``skip`` its records go to ``<out_dir>/bad_samples.jsonl`` (read back on resume)."""
    if data.bad_samples == "skip":
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    return BadSamplePolicy(data.bad_samples, data.max_bad_fraction, total=total,
                           log_path=Path(out_dir) / "bad_samples.jsonl" if data.bad_samples == "skip" else None,
                           context={"rank": rank}, hint="data.bad_samples=skip skips and records such samples")


# At most this many samples in a row are tried in place of a bad one: a longer run of bad samples
# means the data is broken, not a sample.
MAX_REPLACEMENTS = 64


class ReportingBad:
    """A map-style dataset whose bad samples (a :class:`SampleError` when read) are replaced by the
    next readable one, with their records attached under :data:`BAD` for the main process's policy.

    The replacement is a pure function of the index, so a resumed run sees the same batches (and
    the policy, reading its ``bad_samples.jsonl`` back, does not count a sample twice). The sample
    standing in appears twice in that epoch; under ``data.bad_samples=error`` the first record
    stops the run anyway.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        records: list[dict[str, Any]] = []
        for offset in range(min(MAX_REPLACEMENTS, len(self.dataset))):
            try:
                sample = self.dataset[(index + offset) % len(self.dataset)]
            except SampleError as err:
                records.append(err.record())
                continue
            if records:
                sample[BAD] = records
            return sample
        first = records[0]
        raise BadDataError(f"{len(records)} samples in a row cannot be read, the first "
                           f"{container(first)}: {first['reason']}")


def collate_reporting_bad(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """torch's default collation of the samples, with their bad-sample records gathered under :data:`BAD`."""
    from torch.utils.data import default_collate

    records = [record for sample in samples for record in sample.pop(BAD, [])]
    batch = default_collate(samples)
    if records:
        batch[BAD] = records
    return batch
