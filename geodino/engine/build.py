"""Engine-side changes to built networks."""

from __future__ import annotations

import torch

from geodino.models.multicrop import MultiCropWrapper


def compile_backbone(net: MultiCropWrapper) -> None:
    """``torch.compile`` the backbone's forward paths in place; parameter names stay unchanged."""
    model = net.backbone.model
    # The compiled paths are the per-size ones: packing the sizes would run around them (and the
    # compiler fuses the per-token layers itself).
    net.pack_crop_sizes = False
    model.forward_features = torch.compile(model.forward_features, dynamic=False)
    net.backbone.cls_embedding = torch.compile(net.backbone.cls_embedding, dynamic=False)
