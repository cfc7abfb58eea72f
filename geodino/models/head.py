"""The DINO projection head (Caron et al., 2021, §3 and appendix).

An MLP maps the backbone embedding to a bottleneck, which is L2-normalised and projected onto
``out_dim`` prototypes by a weight-normalised linear layer without bias. With the weight-norm
magnitude fixed to 1 the logits are cosines in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from geodino.speedups import matmul_t
from geodino.utils import at_least_float32


class _WeightNormedLinear(torch.autograd.Function):
    """``x @ (g v / |v|)ᵀ`` with a hand-written backward.

    Autograd through ``v / |v|`` allocates several temporaries the size of ``v`` (65536 × 256 in
    the image head) in every backward: the division, the norm's gradient, their sum. Fresh
    allocations that large are page-faulted in on the CPU, which made the prototype layer a fifth
    of the reference-size CPU step (``geodino bench step``). Here the gradient of ``v`` is built
    in place in the one buffer the matmul allocates:

        a_k = Σ_j (Gᵀx)_kj v_kj        (= ∂L/∂s_k, with s_k = g_k / |v_k|)
        ∂L/∂v = s ⊙ (Gᵀx) − v ⊙ (a g / |v|³),   ∂L/∂g = a / |v|

    The scale goes on whichever is smaller, the ``out_dim × in_dim`` weight or the
    ``rows × out_dim`` output (few rows: image heads; many rows: patch heads).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        # fp32 whatever the autocast: the logits are divided by a temperature as low as 0.04, so a
        # bf16 product's ~2e-3 error becomes 0.05 in the softmax's input; and the output dtype used
        # to depend on which side was scaled, i.e. on the batch size (issue 14).
        norm = v.detach().norm(dim=1)
        scale = g.detach().squeeze(1) / norm
        x2 = at_least_float32(x.reshape(-1, x.shape[-1]))
        weight = None  # the normalised weight, when it is the cheaper side to scale
        with torch.autocast(x.device.type, enabled=False):
            if x2.shape[0] <= x.shape[-1]:
                out = matmul_t(x2, v).mul_(scale)
            else:
                weight = v * scale.unsqueeze(1)
                out = matmul_t(x2, weight)
        out = out.reshape(*x.shape[:-1], v.shape[0])  # not -1: x may have no rows (no masked patch)
        ctx.save_for_backward(x, v, g, norm, scale, weight)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, v, g, norm, scale, weight = ctx.saved_tensors
        with torch.autocast(x.device.type, enabled=False):
            x2 = at_least_float32(x.reshape(-1, x.shape[-1]))
            g2 = at_least_float32(grad_out.reshape(-1, grad_out.shape[-1]))
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = matmul_t(g2 * scale, v.t()) if weight is None else matmul_t(g2, weight.t())
                grad_x = grad_x.reshape(x.shape).to(x.dtype)
            grad_raw = matmul_t(g2.t(), x2.t()).to(v.dtype)  # Gᵀx, [out_dim, in_dim]
        a = torch.einsum("kd,kd->k", grad_raw, v)  # row-wise dot product, no [out_dim, in_dim] temporary
        grad_g = (a / norm).unsqueeze(1).to(g.dtype) if ctx.needs_input_grad[2] else None
        grad_v = None
        if ctx.needs_input_grad[1]:
            coef = (a * g.squeeze(1) / norm**3).unsqueeze(1)
            grad_v = grad_raw.mul_(scale.unsqueeze(1)).addcmul_(v, coef, value=-1.0)
        return grad_x, grad_v, grad_g


class _L2Normalize(torch.autograd.Function):
    """``F.normalize(x, dim=-1)`` (rows divided by ``max(|x|, eps)``), same value and gradient, with
    a hand-written backward: autograd's through the norm, the clamp and the division launches 13
    kernels per head per step, this one 6 (issue 14: on a GPU, launches are host time).

        ∂L/∂x = (g − y (g·y)) / |x|,  or g / eps where the clamp holds (|x| ≤ eps, as torch.clamp_min
        counts a tie).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        norm = x.norm(2, -1, keepdim=True)  # as F.normalize computes it (and autocast types it)
        divisor = norm.clamp_min(eps)
        y = x / divisor
        ctx.eps = eps
        ctx.save_for_backward(y, norm, divisor)
        return y

    @staticmethod
    @once_differentiable  # (the saved tensors are not tied to x: a second derivative would be wrong)
    def backward(ctx, grad: torch.Tensor):
        y, norm, divisor = ctx.saved_tensors
        along = (grad * y).sum(-1, keepdim=True).masked_fill_(norm <= ctx.eps, 0.0)
        return torch.addcmul(grad, y, along, value=-1.0).div_(divisor), None


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``F.normalize(x, p=2, dim=-1, eps=eps)`` in fewer kernel launches (:class:`_L2Normalize`)."""
    return _L2Normalize.apply(x, eps)


class PrototypeLayer(nn.Module):
    """Weight-normalised ``Linear(bottleneck, out_dim, bias=False)``: row ``k`` is ``g_k v_k / |v_k|``.

    Mathematically the same as ``torch.nn.utils.parametrizations.weight_norm`` (``dim=0``), in
    value and gradient (tested), without materialising the normalised weight in the forward or
    the norm's gradient in the backward (see :class:`_WeightNormedLinear`; measured with
    ``geodino bench step``).
    """

    def __init__(self, in_dim: int, out_dim: int, norm_last_layer: bool = True) -> None:
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.kaiming_uniform_(self.weight_v, a=5**0.5)  # nn.Linear's default init
        # The magnitude starts at 1 and stays there when frozen (norm_last_layer=True).
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not norm_last_layer)

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _WeightNormedLinear.apply(x, self.weight_v, self.weight_g)


class DINOHead(nn.Module):
    """Projection head of DINO.

    ``Linear(in, hidden) → GELU → [Linear(hidden, hidden) → GELU] × (nlayers - 2) → Linear(hidden,
    bottleneck)`` (BatchNorm after each hidden Linear when ``use_bn``), then L2-normalisation and
    the weight-normalised prototype layer. MLP weights are trunc-normal(std=0.02), biases zero.

    Example:
        >>> head = DINOHead(384, out_dim=4096)
        >>> head(torch.randn(8, 384)).shape
        torch.Size([8, 4096])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        use_bn: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        nlayers = max(nlayers, 1)
        if nlayers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            for _ in range(nlayers - 2):
                layers.append(nn.Linear(hidden_dim, hidden_dim))
                if use_bn:
                    layers.append(nn.BatchNorm1d(hidden_dim))
                layers.append(nn.GELU())
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.apply(self._init_weights)
        self.last_layer = PrototypeLayer(bottleneck_dim, out_dim, norm_last_layer)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = l2_normalize(self.mlp(x))
        return self.last_layer(x)
