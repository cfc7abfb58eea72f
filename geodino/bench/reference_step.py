"""A baseline for ``geodino bench step``: the DINO step computed the way the reference code does it.

The published implementation (facebookresearch/dino, ``main_dino.py`` + ``vision_transformer.py``)
makes these computational choices, which this module reproduces on the same timm ViT so that the
two steps differ only in how, not in what, they compute:

- explicit attention (``softmax(q kᵀ · scale) v`` as separate ops, the scale applied to the
  N×N score matrix) instead of fused scaled-dot-product;
- the whole last block for every token, although the loss reads only the CLS token;
- a weight-normalised prototype layer whose normalised weight is materialised every forward;
- the loss as a Python loop over (teacher view, student view) pairs;
- AdamW's single-tensor for-loop implementation (the default on the CPU);
- gradient clipping, last-layer freezing and the EMA as Python loops over parameters, with a
  host-side comparison per parameter.

Its images/s can be checked against the anchor measured for the reference itself (DESIGN §6:
about 3.2 images/s for ViT-Tiny/16, 2×224 + 8×96, K = 65536, batch 8, fp32 on 2 cores).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from geodino.config.schema import Config
from geodino.engine.optim import param_groups
from geodino.objectives.networks import build_student_teacher
from geodino.runs.schedules import Schedules


class _ExplicitAttention(nn.Module):
    """timm's ``Attention`` (same weights) computed as the published ViT does."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.qkv, self.proj = attn.qkv, attn.proj
        self.num_heads, self.scale = attn.num_heads, attn.scale

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * self.scale
        out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _MaterialisedPrototypes(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        linear = nn.Linear(layer.weight_v.shape[1], layer.weight_v.shape[0], bias=False)
        linear.weight.data.copy_(layer.weight_v.data)
        self.linear = nn.utils.parametrizations.weight_norm(linear)
        self.linear.parametrizations.weight.original0.data.fill_(1.0)
        self.linear.parametrizations.weight.original0.requires_grad_(layer.weight_g.requires_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _referencify(net: nn.Module) -> None:
    net.skip_unread_patch_tokens = False  # the reference runs the whole last block
    net.pack_crop_sizes = False  # and the backbone once per crop size
    for block in net.backbone.model.blocks:
        block.attn = _ExplicitAttention(block.attn)
    net.head.last_layer = _MaterialisedPrototypes(net.head.last_layer)


class ReferenceStyleStep:
    """Callable like :class:`geodino.engine.pretrain.DINOStep` on random views (fp32 only)."""

    def __init__(self, cfg: Config, in_chans: int, steps_per_epoch: int) -> None:
        torch.manual_seed(cfg.run.seed)
        self.cfg = cfg
        self.student, self.teacher = build_student_teacher(cfg, in_chans)
        _referencify(self.student)
        _referencify(self.teacher)
        self.teacher.load_state_dict(self.student.state_dict())
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(param_groups(self.student), foreach=False)
        self.schedules = Schedules(cfg.optim, cfg.dino, steps_per_epoch, cfg.data.batch_size)
        self.center = torch.zeros(1, cfg.model.out_dim)

    def loss(self, student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor], temp: float):
        student = [s / self.cfg.dino.student_temp for s in student_logits]
        teacher = [F.softmax((t - self.center) / temp, dim=-1).detach() for t in teacher_logits]
        total, n = 0.0, 0
        for iq, q in enumerate(teacher):
            for v, s in enumerate(student):
                if v == iq:
                    continue
                total = total + torch.sum(-q * F.log_softmax(s, dim=-1), dim=-1).mean()
                n += 1
        with torch.no_grad():
            batch_center = torch.cat(teacher_logits).sum(0, keepdim=True) / (len(teacher_logits) * teacher_logits[0].shape[0])
            self.center = self.center * self.cfg.dino.center_momentum + batch_center * (1 - self.cfg.dino.center_momentum)
        return total / n

    def __call__(self, views, step: int, want_signals: bool = False) -> float:
        s, cfg = self.schedules, self.cfg
        for i, group in enumerate(self.optimizer.param_groups):
            group["lr"] = s.lr[step]
            if i == 0:
                group["weight_decay"] = s.weight_decay[step]
        with torch.no_grad():
            teacher_out = list(self.teacher(views.teacher).logits)  # per-view chunks, as the published code
        student_out = list(self.student(views.student).logits)
        loss = self.loss(student_out, teacher_out, s.teacher_temperature(step))
        if not torch.isfinite(loss).item():
            raise RuntimeError("non-finite loss")
        self.optimizer.zero_grad()
        loss.backward()
        for p in self.student.parameters():
            if p.grad is not None:
                coef = cfg.optim.clip_grad / (p.grad.data.norm(2) + 1e-6)
                if coef < 1:
                    p.grad.data.mul_(coef)
        if s.epoch(step) < cfg.optim.freeze_last_layer:
            for name, p in self.student.named_parameters():
                if "last_layer" in name:
                    p.grad = None
        self.optimizer.step()
        m = float(s.momentum[step])
        with torch.no_grad():
            for ps, pt in zip(self.student.parameters(), self.teacher.parameters()):
                pt.data.mul_(m).add_((1 - m) * ps.detach().data)
        return loss.item()
