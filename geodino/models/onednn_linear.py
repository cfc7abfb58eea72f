"""fp32 linear layers through oneDNN on x86-64 CPUs.

PyTorch computes an fp32 ``nn.Linear`` on the CPU with MKL's sgemm. On the AMD EPYC machines this
project is measured on, that reaches ~185 GFLOP/s on 2 cores for the ViT shapes (about what AVX2
kernels give; the CPU has AVX-512), where oneDNN, which PyTorch also ships
(``torch.ops.mkldnn._linear_pointwise``, the op its compiler emits for CPU inference), runs
AVX-512 fp32 kernels at ~400 GFLOP/s in the forward and for the input gradient and ~240-300 for
the weight gradient, with the same results up to rounding order (``geodino bench step`` says
what this gives the training step; BENCHMARKS.md).

:class:`OneDNNLinear` is an ``nn.Linear`` (same parameters, same state dict) that takes this path
for fp32 CPU tensors outside autocast and is ``F.linear`` otherwise (GPU, bf16/fp16); :func:`linear`
is the same as a function and :func:`matmul_t` a plain product for hand-written backwards (the
DINO head's prototype layer). :func:`use_onednn_linears` converts a model's linear layers in
place. ``GEODINO_ONEDNN_LINEAR=0`` turns it off. Inputs that do not fit (wrong sizes) go to
PyTorch's own path, so they fail with its error message, not oneDNN's.
"""

from __future__ import annotations

import math
import os
import platform

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import flop_registry, register_flop_formula


def onednn_linear_available() -> bool:
    """True on x86-64 builds of PyTorch with oneDNN, unless ``GEODINO_ONEDNN_LINEAR=0``."""
    return (os.environ.get("GEODINO_ONEDNN_LINEAR", "1") != "0"
            and platform.machine().lower() in ("x86_64", "amd64")
            and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _register_flops() -> None:
    # FlopCounterMode (``geodino bench step --count-flops``) knows aten's matmuls, not this op.
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None or op in flop_registry:
        return

    @register_flop_formula(op)
    def _linear_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * math.prod(x_shape[:-1]) * x_shape[-1] * w_shape[0]


_register_flops()


def _matmul_t(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b.T (+ bias)`` for 2-D fp32 CPU tensors (either may be a strided view, e.g. a transpose)."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


def _takes_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """fp32 CPU tensors outside autocast whose inner sizes match (``x @ weight.T``)."""
    return (all(t.device.type == "cpu" and t.dtype == torch.float32 and t.numel() > 0 for t in (x, weight))
            and x.shape[-1] == weight.shape[-1] and not torch.is_autocast_enabled("cpu"))


def matmul_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` for 2-D tensors, through oneDNN where it is available and the inputs are fp32
    CPU tensors outside autocast (no autograd: for hand-written backwards)."""
    if _takes_onednn(a, b) and onednn_linear_available():
        return _matmul_t(a, b)
    return a @ b.t()


class _LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        out = _matmul_t(x.reshape(-1, x.shape[-1]), weight, bias)
        return out.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        g = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _matmul_t(g, weight.t().contiguous()).reshape(x.shape)  # G W
        if ctx.needs_input_grad[1]:
            grad_w = _matmul_t(g.t(), x.reshape(-1, x.shape[-1]).t())  # Gᵀ X, no transposed copies
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, through oneDNN for fp32 CPU tensors outside autocast."""
    if _takes_onednn(x, weight):
        return _LinearFunction.apply(x, weight, bias)
    return F.linear(x, weight, bias)


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` whose fp32 CPU forward and backward run on oneDNN (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def use_onednn_linears(model: nn.Module) -> int:
    """Turn every plain ``nn.Linear`` in ``model`` into a :class:`OneDNNLinear` in place (the
    parameters stay the same objects); returns how many. Does nothing where oneDNN is unavailable."""
    if not onednn_linear_available():
        return 0
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = OneDNNLinear
            count += 1
    return count
