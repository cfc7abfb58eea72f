"""Downstream fine-tuning of pretrained backbones: semantic segmentation (``geodino finetune seg``).

``config`` (recipe schema), ``data`` (image + mask sources), ``heads`` (linear, progressive,
UPerNet), ``model`` (backbone + head, layer-wise lr decay) and ``loop`` (training and scoring).
"""

from geodino.finetune.config import SegConfig, load_seg_config
from geodino.finetune.loop import finetune_segmentation

__all__ = ["SegConfig", "finetune_segmentation", "load_seg_config"]
