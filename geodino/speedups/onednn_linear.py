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
place. Inputs that do not fit (wrong sizes) go to PyTorch's own path, so they fail with its error
message, not oneDNN's.

**Chosen by measurement, per machine.** The gain is a property of the CPU: 1.86x the reference
step on an AMD EPYC, but 0.93x on an Intel Xeon with AMX, where PyTorch's own path is the faster
one (issue 14). So unless ``GEODINO_ONEDNN_LINEAR`` says ``1`` (always) or ``0`` (never), the
first model converted in a process times a forward and backward of its own linear shapes both
ways (:func:`measure_onednn_gain`, about a second) and takes oneDNN only where it is at least
:data:`MIN_GAIN` times faster. The verdict is logged and kept per CPU model, torch version,
thread count and shapes in ``$XDG_CACHE_HOME/geodino/onednn_linear.json`` (default
``~/.cache``), so later runs on the machine skip the probe.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import flop_registry, register_flop_formula

from geodino.speedups.switch import feature_on
from geodino.utils import cpu_model, write_json_atomic

log = logging.getLogger("geodino")

MIN_GAIN = 1.05  # oneDNN must beat PyTorch's fp32 linear by this factor to be used
PROBE_ROWS = 2048  # tokens per probe matmul: a few images' worth of ViT tokens
_choice: bool | None = None  # this process's verdict, once measured or forced


def onednn_linear_available() -> bool:
    """True on x86-64 builds of PyTorch with oneDNN (the path exists), unless ``GEODINO_ONEDNN_LINEAR=0``
    or ``GEODINO_SPEEDUPS=off``."""
    return (feature_on("GEODINO_ONEDNN_LINEAR")
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


def _onednn(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


def _dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` if its elements fill one block in row- or column-major order, else a contiguous copy.

    oneDNN multiplies any other layout, such as every N-th row of a larger tensor (the CLS tokens of
    a batch of token sequences, ``x[:, 0]``), with a slow generic kernel: the weight gradient of the
    CLS-only last block, 192 x 256 @ 256 x 192, took 125-275 ms instead of about 0.3 ms (AMD EPYC,
    1 thread; ``geodino bench host``). The copy costs one pass over the rows."""
    return t if t.is_contiguous() or t.t().is_contiguous() else t.contiguous()


def _matmul_t(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b.T (+ bias)`` for 2-D fp32 CPU tensors of any strides (a transpose is multiplied in place)."""
    return _onednn(_dense(a), _dense(b), bias)


def _takes_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """fp32 CPU tensors outside autocast whose inner sizes match (``x @ weight.T``)."""
    return (all(t.device.type == "cpu" and t.dtype == torch.float32 and t.numel() > 0 for t in (x, weight))
            and x.shape[-1] == weight.shape[-1] and not torch.is_autocast_enabled("cpu"))


def matmul_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` for 2-D tensors, through oneDNN where it is available and the inputs are fp32
    CPU tensors outside autocast (no autograd: for hand-written backwards)."""
    if _choice and _takes_onednn(a, b) and onednn_linear_available():
        return _matmul_t(a, b)
    return a @ b.t()


class _LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        rows = _dense(x.reshape(-1, x.shape[-1]))  # densified once, for the forward and the weight gradient
        ctx.save_for_backward(rows, weight)
        ctx.input_shape = x.shape
        ctx.has_bias = bias is not None
        return _matmul_t(rows, weight, bias).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        rows, weight = ctx.saved_tensors
        g = _dense(grad_out.reshape(-1, grad_out.shape[-1]))
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _matmul_t(g, weight.t().contiguous()).reshape(ctx.input_shape)  # G W
        if ctx.needs_input_grad[1]:
            grad_w = _matmul_t(g.t(), rows.t())  # Gᵀ X, no transposed copies
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
    parameters stay the same objects) where oneDNN is available and, on this machine, faster
    (see the module docstring); returns how many."""
    layers = [m for m in model.modules() if type(m) is nn.Linear]
    if not layers or not onednn_linear_enabled(sorted({(m.in_features, m.out_features) for m in layers})):
        return 0
    for module in layers:
        module.__class__ = OneDNNLinear
    return len(layers)


def onednn_linear_enabled(shapes: list[tuple[int, int]]) -> bool:
    """Whether fp32 CPU linears of these ``(in, out)`` shapes take oneDNN in this process: forced by
    ``GEODINO_ONEDNN_LINEAR=0|1``, else measured once (or read from the cache) and kept."""
    global _choice
    forced = os.environ.get("GEODINO_ONEDNN_LINEAR", "")
    if not onednn_linear_available():
        _choice = False
    elif forced == "1":
        _choice = True
    elif _choice is None:
        _choice = _measured_choice(shapes)
    return _choice


def _cache_path() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "geodino" / "onednn_linear.json"


def _measured_choice(shapes: list[tuple[int, int]]) -> bool:
    key = f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads | {shapes}"
    path = _cache_path()
    try:
        cache = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        gain = float(cache[key])
        source = f"measured earlier on this machine ({path})"
    else:
        gain = measure_onednn_gain(shapes)
        source = "measured now"
        try:
            write_json_atomic(path, {**cache, key: round(gain, 3)})
        except OSError:  # a read-only home: measure again next time
            pass
    use = gain >= MIN_GAIN
    log.info("fp32 CPU linear layers: oneDNN is %.2fx PyTorch's own on %s (%s): %s (GEODINO_ONEDNN_LINEAR=0|1 "
             "overrides)", gain, cpu_model(), source, "using oneDNN" if use else "using PyTorch's")
    return use


def measure_onednn_gain(shapes: list[tuple[int, int]], rows: int = PROBE_ROWS, rounds: int = 3) -> float:
    """PyTorch's time over oneDNN's for a forward and backward of every shape (``rows`` tokens), the
    two paths alternated ``rounds`` times; the median of each path's rounds."""
    torch.manual_seed(0)
    inputs = [(torch.randn(rows, i), torch.randn(o, i) * i ** -0.5, torch.zeros(o)) for i, o in shapes]

    def once(fn) -> float:
        started = time.perf_counter()
        for x, w, b in inputs:
            x, w, b = (t.detach().requires_grad_(True) for t in (x, w, b))
            fn(x, w, b).sum().backward()
        return time.perf_counter() - started

    def onednn(x, w, b):
        return _LinearFunction.apply(x, w, b)

    once(F.linear), once(onednn)  # warm-up: first calls allocate and pick kernels
    torch_times, onednn_times = [], []
    for _ in range(rounds):
        torch_times.append(once(F.linear))
        onednn_times.append(once(onednn))
    return sorted(torch_times)[rounds // 2] / max(sorted(onednn_times)[rounds // 2], 1e-9)
