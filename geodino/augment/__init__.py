"""Batched multi-crop augmentation on the batch's device, for RGB and any number of bands.

The training engine calls :class:`MultiCropAugment` once per batch and gets :class:`Views`
back; every random parameter comes from the CPU ``torch.Generator`` it passes. The pieces:

- :mod:`~geodino.augment.params`     sampling of crop boxes and per-view parameters (CPU)
- :mod:`~geodino.augment.crop`       bicubic resampling of many crops in one call
- :mod:`~geodino.augment.intensity`  colour jitter, grayscale, blur, solarize (RGB and band-agnostic)
- :mod:`~geodino.augment.modality`   modality masking (DINO-MM) and fixed modality choices for evaluation
- :mod:`~geodino.augment.multicrop`  the module that puts them together
"""

from __future__ import annotations

from geodino.augment.modality import apply_modality_choice, channel_table, sample_modality_drop
from geodino.augment.multicrop import MultiCropAugment, Views
from geodino.augment.params import ViewParams, ViewRecipe, sample_crop_boxes, sample_view_params

__all__ = [
    "MultiCropAugment",
    "Views",
    "ViewParams",
    "ViewRecipe",
    "apply_modality_choice",
    "channel_table",
    "sample_crop_boxes",
    "sample_modality_drop",
    "sample_view_params",
]
