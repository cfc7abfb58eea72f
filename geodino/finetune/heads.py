"""Segmentation decoders on ViT patch-token maps.

Each head takes a list of feature maps ``[B, D, h, w]`` (the token grids of some blocks, see
:class:`~geodino.finetune.model.SegmentationModel`) and the output size, and returns class logits
at that size:

- ``linear``: batch norm and a 1×1 convolution on the last map, bilinearly upsampled (the linear
  segmentation probe of DINOv2);
- ``progressive``: log₂(patch size) stages of 3×3 conv + BN + ReLU + ×2 upsampling (SETR-PUP);
- ``upernet``: the four maps turned into a pyramid at 4×, 2×, 1× and ½× the token grid (the
  "simple feature pyramid" of ViTDet, as BEiT and MAE use it with UPerNet), then
  segmentation_models_pytorch's UPerNet decoder (PSP on the coarsest level + FPN + fusion).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class LinearHead(nn.Module):
    levels_needed = 1

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(embed_dim)
        self.classifier = nn.Conv2d(embed_dim, num_classes, kernel_size=1)

    def forward(self, maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        return _upsample(self.classifier(self.norm(maps[-1])), size)


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ProgressiveHead(nn.Module):
    levels_needed = 1

    def __init__(self, embed_dim: int, num_classes: int, patch_size: int, channels: int = 256) -> None:
        super().__init__()
        stages = max(1, round(math.log2(max(patch_size, 2))))
        widths = [embed_dim] + [channels] * stages
        self.stages = nn.ModuleList(_conv_bn_relu(widths[i], widths[i + 1]) for i in range(stages))
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = maps[-1]
        for stage in self.stages:
            x = F.interpolate(stage(x), scale_factor=2, mode="bilinear", align_corners=False)
        return _upsample(self.classifier(x), size)


class SimpleFeaturePyramid(nn.Module):
    """Four same-resolution ViT maps → maps at 4×, 2×, 1× and ½× that resolution (ViTDet)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        d = embed_dim
        self.up4 = nn.Sequential(nn.ConvTranspose2d(d, d, 2, stride=2), nn.BatchNorm2d(d), nn.GELU(),
                                 nn.ConvTranspose2d(d, d, 2, stride=2))
        self.up2 = nn.ConvTranspose2d(d, d, 2, stride=2)
        self.down2 = nn.MaxPool2d(2, ceil_mode=True)  # ceil: an odd grid keeps its border

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(maps) != 4:
            raise ValueError(f"the feature pyramid takes 4 maps, got {len(maps)}")
        return [self.up4(maps[0]), self.up2(maps[1]), maps[2], self.down2(maps[3])]


class UPerNetHead(nn.Module):
    levels_needed = 4

    def __init__(self, embed_dim: int, num_classes: int, channels: int = 256) -> None:
        super().__init__()
        # The decoder is segmentation_models_pytorch's (maintained, used with its CNN encoders);
        # it expects encoder outputs at strides [1, 2, 4, 8, 16, 32] and uses the last four.
        from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder

        self.pyramid = SimpleFeaturePyramid(embed_dim)
        self.decoder = UPerNetDecoder(encoder_channels=[embed_dim] * 6, encoder_depth=5, decoder_channels=channels)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        levels = self.pyramid(maps)
        # The two highest-resolution slots are skipped by the decoder; they only hold places.
        decoded = self.decoder([levels[0], levels[0], *levels])
        return _upsample(self.classifier(decoded), size)


def build_head(name: str, embed_dim: int, num_classes: int, patch_size: int, channels: int = 256) -> nn.Module:
    if name == "linear":
        return LinearHead(embed_dim, num_classes)
    if name == "progressive":
        return ProgressiveHead(embed_dim, num_classes, patch_size, channels)
    if name == "upernet":
        return UPerNetHead(embed_dim, num_classes, channels)
    raise ValueError(f"unknown head {name!r} (linear, progressive, upernet)")
