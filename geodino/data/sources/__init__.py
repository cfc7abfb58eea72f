"""Readers that turn Earth-observation datasets in their distributed layout into shard samples.

Each source module lists the items of a dataset (``list_*``) and reads one item into
:class:`geodino.data.shards.format.SampleParts` (``read_*``). Reading is a plain function of a
picklable record so that the shard writer can fan it out to worker processes.
"""

from __future__ import annotations


class PatchError(Exception):
    """One patch (or image) cannot be converted; names the file at fault and why.

    The shard writer turns these into lines of ``rejects.jsonl`` (or re-raises them with
    ``--strict``); every other exception is a bug and propagates.
    """

    def __init__(self, patch: str, file: str, reason: str) -> None:
        super().__init__(f"{patch}: {file}: {reason}")
        self.patch = patch
        self.file = file
        self.reason = reason

    def __reduce__(self):  # keep the three fields when crossing a process boundary
        return (PatchError, (self.patch, self.file, self.reason))
