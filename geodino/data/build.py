"""The pretraining job's door to data: the batches a recipe asks for, and the k-NN check's labelled sets.

Both ask the data-source registry (:mod:`geodino.data.registry`) for ``data.source``; the batch
plumbing itself lives in :mod:`geodino.data.batches` and in the shard stream.
"""

from __future__ import annotations

import logging

from geodino.config.schema import Config
from geodino.data.batches import PretrainData
from geodino.data.labelled import LabelledSet
from geodino.data.registry import get_source

log = logging.getLogger(__name__)


def build_pretrain_data(cfg: Config, rank: int = 0, world_size: int = 1) -> PretrainData:
    """The recipe's pretraining batches for process ``rank`` of ``world_size``; says in the log what
    they are read from (for shards: which split, how much, and which splits were left out)."""
    data = get_source(cfg.data.source, "pretraining").pretrain_data(cfg, rank, world_size)
    if rank == 0 and data.description:
        log.info("pretraining data (%s): %s", cfg.data.source, data.description)
    return data


def build_knn_data(cfg: Config) -> tuple[LabelledSet, LabelledSet] | None:
    """Labelled (memory bank, queries) for the k-NN check during pretraining, if the source has them."""
    return get_source(cfg.data.source).knn_data(cfg)
