"""Speed-ups that depend on the machine, kept apart from the math they speed up.

- :mod:`~geodino.speedups.onednn_linear`: fp32 CPU linear layers through oneDNN's kernels, taken
  only where a one-time measurement on this machine finds them faster;
- :mod:`~geodino.speedups.cpu_memory`: glibc's malloc told to keep freed memory (CPU training);
- :mod:`~geodino.speedups.cls_block`: the last ViT block computed for the CLS token alone when
  nothing reads the other tokens;
- :mod:`~geodino.speedups.packing`: crops of several sizes through a ViT's blocks as one table of
  tokens (per-token layers once, attention per size).

Each gives the same numbers as the plain path up to float rounding, and all of them answer to one
switch, ``GEODINO_SPEEDUPS=off`` (:mod:`~geodino.speedups.switch`). The engine, evaluation and
fine-tuning call :func:`prepare_process` and :func:`prepare_model`; the models call
:func:`matmul_t` and :func:`cls_only_block` where the math needs a product or the last block.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from geodino.speedups.cls_block import cls_only_block, supports_cls_only
from geodino.speedups.cpu_memory import keep_freed_memory
from geodino.speedups.onednn_linear import matmul_t, use_onednn_linears
from geodino.speedups.switch import SWITCH, speedups_on

__all__ = ["SWITCH", "cls_only_block", "matmul_t", "prepare_model", "prepare_process", "speedups_on",
           "supports_cls_only"]


def prepare_process(on_cpu: bool) -> None:
    """Process-wide settings before training: malloc tuning when the work runs on the CPU."""
    if on_cpu:
        keep_freed_memory()


def prepare_model(model: nn.Module, device: torch.device | str) -> int:
    """Give ``model``, to run on ``device``, this machine's fast paths in place (oneDNN linears
    where they win on this CPU); returns the number of layers changed (0 with the switch off,
    where nothing wins, and on a GPU, where the probe would time the wrong processor)."""
    if torch.device(device).type != "cpu":
        return 0
    return use_onednn_linears(model)
