"""The DINO projection head (Caron et al., 2021, §3 and appendix).

An MLP maps the backbone embedding to a bottleneck, which is L2-normalised and projected onto
``out_dim`` prototypes by a weight-normalised linear layer without bias. With the weight-norm
magnitude fixed to 1 the logits are cosines in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PrototypeLayer(nn.Module):
    """Weight-normalised ``Linear(bottleneck, out_dim, bias=False)``: row ``k`` is ``g_k v_k / |v_k|``.

    Mathematically the same as ``torch.nn.utils.parametrizations.weight_norm`` (``dim=0``), but
    the scale ``g / |v|`` goes on whichever is smaller, the ``out_dim × bottleneck`` weight or the
    ``rows × out_dim`` output. With few rows (image heads: K = 65536 and tens of crops) scaling
    ``x @ v.T`` column-wise saves a full read-write of the 16.7 M-entry matrix in the forward and
    in the backward (measured: see ``geodino bench step``); with more rows than ``bottleneck``
    (patch heads: one row per patch token) scaling the weight is the cheaper of the two.
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
        scale = self.weight_g.squeeze(1) / self.weight_v.norm(dim=1)
        rows = x.numel() // x.shape[-1]
        if rows > x.shape[-1]:
            return x @ (self.weight_v * scale.unsqueeze(1)).t()
        return (x @ self.weight_v.t()) * scale


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
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)
