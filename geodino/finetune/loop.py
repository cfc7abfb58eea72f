"""Semantic-segmentation fine-tuning of a pretrained (or randomly initialised) ViT.

One step: standardise the batch with the card, flip image and mask together, resize the image to
the model's input size, predict, bring the logits back to the mask's size, cross-entropy with the
ignore index, AdamW with per-layer learning rates. The run writes to ``run.out_dir``:

- ``config.yaml`` (the effective recipe), ``metrics.jsonl`` (training loss and lr, validation
  scores), ``metrics.json`` (final mIoU, per-class IoU, overall accuracy, what was trained);
- ``predictions/NNN.png``: validation samples, composite | ground truth | prediction;
- ``segmentation.pt``: the model's weights and the recipe (``weights_only`` loadable).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from geodino.data.card import DatasetCard
from geodino.eval.features import standardise
from geodino.eval.metrics import confusion_matrix, segmentation_scores
from geodino.finetune.config import RANDOM_INIT, SegConfig, save_seg_config, seg_config_to_dict
from geodino.finetune.data import IGNORE_INDEX, SegData, build_seg_data
from geodino.finetune.heads import build_head
from geodino.finetune.model import SegmentationModel, layer_decay_groups
from geodino.runs.checkpoint import save_torch
from geodino.runs.stop import TrainingDiverged
from geodino.speedups import prepare_model
from geodino.utils import allow_tf32, autocast_to, resolve_device, resolve_precision, write_json_atomic

log = logging.getLogger("geodino")


def build_backbone_for(cfg: SegConfig):
    """``(backbone, card or None, description)``: the checkpoint's teacher, or a random init."""
    m = cfg.model
    if m.pretrained != RANDOM_INIT and Path(m.pretrained).is_dir():  # a geodino export folder
        from geodino.eval.checkpoint import load_export_backbone

        backbone, card, config = load_export_backbone(m.pretrained)
        return backbone, card, f"{config['architecture']} from export {m.pretrained}"
    if m.pretrained != RANDOM_INIT:
        from geodino.eval.checkpoint import load_teacher_backbone

        backbone, card, recipe = load_teacher_backbone(m.pretrained)
        arch = recipe["model"]["arch"]
        return backbone, card, f"{arch} from {m.pretrained}"
    return None, None, f"{m.arch} (random init)"


def random_backbone(cfg: SegConfig, card: DatasetCard):
    from geodino.models.backbone import build_backbone

    m = cfg.model
    return build_backbone(m.arch, in_chans=card.num_bands, img_size=m.img_size or cfg.data.image_size,
                          patch_size=m.patch_size or None, depth=m.depth or None, drop_path_rate=m.drop_path_rate)


def _flip(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent horizontal and vertical flips per sample, the same for image and mask."""
    for dim in (-1, -2):
        flip = torch.rand(images.shape[0], generator=generator) < 0.5
        if flip.any():
            images, masks = images.clone(), masks.clone()
            images[flip] = images[flip].flip(dim)
            masks[flip] = masks[flip].flip(dim)
    return images, masks


def _inputs(batch: dict[str, torch.Tensor], card: DatasetCard, size: int, device: str) -> torch.Tensor:
    images = standardise(batch["image"].to(device, non_blocking=True), card)
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images


def predict(model: SegmentationModel, batch: dict[str, torch.Tensor], card: DatasetCard, size: int,
            device: str, precision: str = "fp32") -> torch.Tensor:
    """Logits (float32) at the mask's resolution; the model runs under ``precision`` (bf16 or fp32)."""
    images = _inputs(batch, card, size, device)
    with autocast_to(precision, device):
        logits = model(images).float()
    target = tuple(batch["mask"].shape[-2:])
    if tuple(logits.shape[-2:]) != target:
        logits = F.interpolate(logits, size=target, mode="bilinear", align_corners=False)
    return logits


@torch.no_grad()
def evaluate(model: SegmentationModel, data: SegData, size: int, device: str, out_dir: Path | None = None,
             predictions: int = 0, precision: str = "fp32") -> dict[str, Any]:
    """mIoU, per-class IoU and overall accuracy on the validation data; draws the first
    ``predictions`` samples as PNGs under ``out_dir/predictions``."""
    from geodino.viz.segmentation import save_prediction

    was_training = model.training
    model.eval()
    confusion = torch.zeros(data.num_classes, data.num_classes, dtype=torch.int64)
    drawn = 0
    for batch in data.val_batches():
        predicted = predict(model, batch, data.card, size, device, precision).argmax(1).cpu()
        confusion += confusion_matrix(predicted, batch["mask"], data.num_classes, IGNORE_INDEX)
        for i in range(len(predicted)):
            if out_dir is None or drawn >= predictions:
                break
            save_prediction(batch["image"][i].numpy(), data.card.band_names, batch["mask"][i].numpy(),
                            predicted[i].numpy(), data.class_names, out_dir / "predictions" / f"{drawn:03d}.png",
                            IGNORE_INDEX)
            drawn += 1
    model.train(was_training)
    return segmentation_scores(confusion, data.class_names)


def finetune_segmentation(cfg: SegConfig) -> dict[str, Any]:
    """Train the recipe's model and return (and write) its final scores."""
    from geodino.runs.metrics import MetricsLog
    from geodino.runs.schedules import cosine_schedule

    torch.manual_seed(cfg.run.seed)
    device, out_dir = resolve_device(cfg.run.device), Path(cfg.run.out_dir)
    precision = resolve_precision(cfg.run.precision, device)
    allow_tf32()
    out_dir.mkdir(parents=True, exist_ok=True)
    backbone, card, described = build_backbone_for(cfg)
    if backbone is not None:  # before the data are read
        backbone.check_input_size(cfg.data.image_size, "data.image_size")
    data = build_seg_data(cfg, card)
    if backbone is None:
        backbone = random_backbone(cfg, data.card)
        backbone.check_input_size(cfg.data.image_size, "data.image_size")
    head = build_head(cfg.model.head, backbone.embed_dim, data.num_classes, backbone.patch_size or 16,
                      cfg.model.decoder_channels)
    model = SegmentationModel(backbone, head, cfg.model.levels or None, cfg.model.freeze_backbone).to(device)
    prepare_model(model, device)
    groups = layer_decay_groups(model, cfg.train.weight_decay, cfg.model.layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=cfg.train.lr)
    t = cfg.train
    lr = cosine_schedule(t.lr, t.min_lr, t.epochs, data.steps_per_epoch, t.warmup_epochs)
    total = min(len(lr), t.max_steps) if t.max_steps else len(lr)
    save_seg_config(cfg, out_dir / "config.yaml")
    metrics = MetricsLog(out_dir / "metrics.jsonl")
    metrics.truncate_after(0)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("segmentation: %s, head %s, %d classes, %s; %d steps, %d trainable parameters, %s on %s",
             described, cfg.model.head, data.num_classes, data.description, total, trainable, precision, device)

    generator = torch.Generator().manual_seed(cfg.run.seed)
    size = cfg.data.image_size
    step, started = 0, time.perf_counter()
    # Whether any loss so far was not finite, on the device: read on logging steps only (reading
    # every step's loss would make the host wait for each step on a GPU).
    bad = torch.zeros((), dtype=torch.bool, device=device)
    first_log = 0  # the first step since the last check
    model.train()
    for epoch in range(t.epochs):
        for batch in data.train_batches(epoch):
            if step >= total:
                break
            for group in optimizer.param_groups:
                group["lr"] = float(lr[step]) * group["lr_scale"]
            if t.flip:
                batch["image"], batch["mask"] = _flip(batch["image"], batch["mask"], generator)
            logits = predict(model, batch, data.card, size, device, precision)
            loss = F.cross_entropy(logits, batch["mask"].to(device, non_blocking=True), ignore_index=IGNORE_INDEX)
            bad |= ~torch.isfinite(loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % t.log_every == 0 or step == total:
                if bool(bad):
                    raise TrainingDiverged(f"non-finite segmentation loss between steps {first_log + 1} and {step} "
                                           "(nothing was saved); lower train.lr, or look for NaN in the input bands")
                first_log = step
                metrics.write({"step": step, "epoch": epoch, "loss": loss.item(), "lr": float(lr[step - 1]),
                               "elapsed_s": round(time.perf_counter() - started, 2)})
        if step >= total:
            break
        if t.eval_every and (epoch + 1) % t.eval_every == 0 and epoch + 1 < t.epochs:
            scores = evaluate(model, data, size, device, precision=precision)
            metrics.write({"step": step, "epoch": epoch, "val_miou": scores["miou"],
                           "val_overall_accuracy": scores["overall_accuracy"]})

    scores = evaluate(model, data, size, device, out_dir, t.predictions, precision)
    metrics.write({"step": step, "epoch": t.epochs - 1, "val_miou": scores["miou"],
                   "val_overall_accuracy": scores["overall_accuracy"]})
    summary = {
        **scores, "steps": step, "backbone": described, "head": cfg.model.head,
        "frozen_backbone": cfg.model.freeze_backbone, "classes": data.class_names, "data": data.description,
        "precision": precision, "device": device,
        "train_seconds": round(time.perf_counter() - started, 1), "out_dir": str(out_dir),
    }
    write_json_atomic(out_dir / "metrics.json", summary)
    save_torch({"model": model.state_dict(), "config": seg_config_to_dict(cfg), "classes": data.class_names,
                "card": data.card.to_dict()}, out_dir / "segmentation.pt")
    log.info("segmentation: mIoU %.2f, overall accuracy %.2f; results in %s", scores["miou"],
             scores["overall_accuracy"], out_dir)
    return summary
