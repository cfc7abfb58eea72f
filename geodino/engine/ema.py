"""The teacher as an exponential moving average of the student."""

from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher ← m·teacher + (1 − m)·student`` for every parameter, with foreach kernels.

    Both modules must have the same parameters in the same order (the teacher is built as a
    copy of the student).
    """
    t_params = list(teacher.parameters())
    s_params = list(student.parameters())  # read under no_grad: no detached copies (one op each)
    if len(t_params) != len(s_params):
        raise ValueError(f"teacher has {len(t_params)} parameters, student {len(s_params)}")
    torch._foreach_lerp_(t_params, s_params, 1.0 - momentum)  # one pass: t + (1 − m)(s − t)
