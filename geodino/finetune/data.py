"""Segmentation data for fine-tuning: the recipe's ``data.source`` asked through the data-source registry.

The readers (synthetic scenes, shards with ``mask.npy``, SEN12MS) and the batches they yield live in
:mod:`geodino.data.segmentation`; their names are kept here for the fine-tuning code and its users.
"""

from __future__ import annotations

from geodino.data.card import DatasetCard
from geodino.data.registry import get_source
from geodino.data.segmentation import DFC_CLASSES, IGBP_CLASSES, IGBP_TO_DFC, IGNORE_INDEX, SEN12MSMasks, SegData
from geodino.finetune.config import SegConfig

__all__ = ["DFC_CLASSES", "IGBP_CLASSES", "IGBP_TO_DFC", "IGNORE_INDEX", "SEN12MSMasks", "SegData", "build_seg_data"]


def build_seg_data(cfg: SegConfig, card: DatasetCard | None = None) -> SegData:
    """The recipe's data; ``card`` is the pretrained model's (its bands and statistics win)."""
    return get_source(cfg.data.source, "segmentation").segmentation_data(cfg, card)
