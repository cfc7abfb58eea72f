"""Models: timm backbones with any channel count, the DINO projection head, the multi-crop wrapper."""

from geodino.models.backbone import Backbone, BackboneOutput, build_backbone
from geodino.models.head import DINOHead
from geodino.models.multicrop import MultiCropWrapper

__all__ = ["Backbone", "BackboneOutput", "DINOHead", "MultiCropWrapper", "build_backbone"]
