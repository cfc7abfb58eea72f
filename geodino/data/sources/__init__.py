"""Readers that turn Earth-observation datasets in their distributed layout into shard samples.

Each source module lists the items of a dataset (``list_*``) and reads one item into
:class:`geodino.data.shards.format.SampleParts` (``read_*``). Reading is a plain function of a
picklable record so that the shard writer can fan it out to worker processes.
"""

from __future__ import annotations


from geodino.data.shards.format import PatchError

__all__ = ["PatchError"]
