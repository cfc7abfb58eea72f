"""Resampling of crop boxes to fixed-size views: bicubic, batched, on the images' device.

All views of one output size are cut in a single ``grid_sample`` call. The sampling grid of a
sample holds its V crops stacked one above the other, so the call reads the batch once and writes
a ``[N, C, V * size, size]`` mosaic; nothing is copied V times (feeding kornia's
``crop_and_resize`` would need one input row per crop, i.e. ``V`` copies of the batch).

Geometry follows torchvision's ``resized_crop`` with ``antialias=False``: output pixel ``j`` of a
box ``[left, left + w)`` samples the source at ``left + (j + 0.5) * w / size`` (pixel edges at
integers, half-pixel centres), bicubic with ``a = -0.75``, and taps beyond the image border repeat
the edge pixel. Taps beyond the *box* but inside the image read the real neighbouring pixels
(torchvision crops first and replicates the box edge instead), which is the more faithful choice.
Downsampling is not antialiased; with the crop-to-output ratios used for multi-crop (mostly
within a factor of two) the aliasing is mild.

Horizontal flips are folded into the grid (mirrored sample positions): no extra pass over the
pixels, and exact, since every later op in the pipeline is symmetric under mirroring.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from geodino.utils import to_device_async


def crop_grid_coordinates(
    boxes: np.ndarray | torch.Tensor, flip: np.ndarray | torch.Tensor, size: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised sampling coordinates (``align_corners=False`` convention) of each crop, on the host.

    Args:
        boxes: integer ``[..., 4]`` of ``(top, left, box_height, box_width)`` (numpy or a CPU tensor).
        flip: bool ``[...]``: mirror the crop left-right.
        size: output side length in pixels.

    Returns:
        ``(gx, gy)``, each ``float64 [..., size]``: x of every output column, y of every output row.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    top, left, h, w = np.moveaxis(boxes, -1, 0)
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    across = np.where(np.asarray(flip, dtype=bool)[..., None], 1.0 - centres, centres)
    x = left[..., None] + across * w[..., None]
    y = top[..., None] + centres * h[..., None]
    # Pixel-edge coordinate e in [0, W] maps to grid_sample's [-1, 1] as 2 e / W - 1.
    return 2.0 * x / width - 1.0, 2.0 * y / height - 1.0


def resized_crops(
    images: torch.Tensor, boxes: np.ndarray | torch.Tensor, flip: np.ndarray | torch.Tensor, size: int
) -> torch.Tensor:
    """Cut V crops of every image and resize each to ``size`` x ``size`` (bicubic).

    Args:
        images: ``[N, C, H, W]`` floating tensor on any device.
        boxes: integer ``[V, N, 4]`` of ``(top, left, box_height, box_width)`` (numpy or CPU tensor).
        flip: bool ``[V, N]``.
        size: output side length.

    Returns:
        ``[V * N, C, size, size]`` on ``images.device``, view-major (all images' crop 0 first).
    """
    n, c, height, width = images.shape
    boxes, flip = np.asarray(boxes), np.asarray(flip)
    v = boxes.shape[0]
    if boxes.shape[:2] != (v, n) or flip.shape != (v, n):
        raise ValueError(f"expected boxes [V, {n}, 4] and flip [V, {n}], got {tuple(boxes.shape)}, {tuple(flip.shape)}")
    gx, gy = crop_grid_coordinates(boxes, flip, size, height, width)
    # Only the per-row coordinate vectors travel to the device, in one copy; the full grid (V N
    # size^2 points) is built there by broadcasting.
    host = torch.from_numpy(np.stack([gx, gy]))
    gx, gy = to_device_async(host, images.device, images.dtype).transpose(1, 2).unbind(0)  # each [N, V, size]
    # [N, V, size, size, 2], i.e. [N, V * size, size, 2]: each image's crops stacked vertically,
    # built in that order by the one stack (a view of it, no second copy).
    grid = torch.stack(
        [gx[:, :, None, :].expand(n, v, size, size), gy[:, :, :, None].expand(n, v, size, size)], dim=-1
    ).view(n, v * size, size, 2)
    mosaic = F.grid_sample(images, grid, mode="bicubic", padding_mode="border", align_corners=False)
    crops = mosaic.view(n, c, v, size, size).permute(2, 0, 1, 3, 4)
    return crops.reshape(v * n, c, size, size)
