"""Dense evaluation of frozen patch tokens: per-patch k-NN and a per-patch linear probe on the
class maps of the synthetic scenes.

Patch-level objectives (SelfPatch, masked patches) are meant to improve what each patch token
says about its own piece of the image, which an image-level k-NN cannot see. Here every scene's
pixel class map (``mask`` of :class:`geodino.data.synthetic.SyntheticScenes`) is pooled onto the
backbone's patch grid by majority vote, and each patch token of the teacher backbone is one
labelled example. Two protocols on the same features:

- **k-NN**: the patches of the ``knn_train`` scenes are the memory bank; every patch of the
  ``knn_val`` scenes is classified by the weighted vote of its ``k`` most cosine-similar bank
  patches (:func:`geodino.eval.knn.knn_predict`, as DINO's image-level k-NN).
- **linear**: one linear layer on the standardised patch tokens
  (:func:`geodino.eval.linear.train_linear_probe`).

Both report patch accuracy and mIoU over the classes present (per patch, i.e. a segmentation at
patch resolution). Reproduce from a run folder::

    python -m geodino.eval.dense runs/quickstart            # the trained teacher
    python -m geodino.eval.dense runs/quickstart --random-init   # the same recipe, untrained
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from geodino.config.schema import number
from geodino.data.card import DatasetCard
from geodino.data.batches import device_loader
from geodino.eval.features import fit_size, standardise
from geodino.eval.knn import knn_predict
from geodino.models.backbone import Backbone
from geodino.utils import PRECISIONS, autocast_to, resolve_device, resolve_precision


def patch_majority_labels(masks: torch.Tensor, grid: tuple[int, int], num_classes: int) -> torch.Tensor:
    """Pixel class maps ``[B, H, W]`` → the most frequent class of each patch, ``[B, h*w]``.

    Pixels are shared out by area when ``H × W`` is not a multiple of the grid; ties go to the
    lower class index.
    """
    one_hot = F.one_hot(masks.long(), num_classes).permute(0, 3, 1, 2).float()  # [B, K, H, W]
    shares = F.adaptive_avg_pool2d(one_hot, grid)  # [B, K, h, w]
    return shares.argmax(1).flatten(1)


@torch.no_grad()
def extract_patch_features(
    backbone: Backbone,
    dataset: Dataset,
    card: DatasetCard,
    size: int | None = None,
    num_classes: int | None = None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    workers: int = 0,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch tokens ``[P, D]`` (float32) of every scene (resized whole to ``size``) and their
    majority classes ``[P]``; samples are dicts with ``image`` and ``mask``. ``workers`` and
    ``precision`` as :func:`~geodino.eval.features.extract_feature_sets` takes them."""
    if not backbone.is_vit:
        raise ValueError("dense evaluation reads patch tokens: it needs a ViT backbone")
    num_classes = num_classes or len(card.classes)
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    precision = resolve_precision(precision, device)
    for batch in device_loader(dataset, batch_size, device, workers, shuffle=False):
        images = fit_size(standardise(batch["image"].to(device, non_blocking=True).float(), card), size)
        with autocast_to(precision, device):
            out = backbone(images)
        features.append(out.patches.float().cpu().flatten(0, 1))
        labels.append(patch_majority_labels(batch["mask"], out.grid, num_classes).flatten())
    backbone.train(was_training)
    return torch.cat(features), torch.cat(labels)


def _segmentation(predicted: torch.Tensor, target: torch.Tensor, num_classes: int, names: list[str]) -> dict[str, Any]:
    from geodino.eval.metrics import confusion_matrix, segmentation_scores

    scores = segmentation_scores(confusion_matrix(predicted, target, num_classes), names)
    return {"patch_accuracy": scores["overall_accuracy"], "miou": scores["miou"],
            "per_class_iou": scores["per_class_iou"]}


def dense_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    class_names: list[str] | None = None,
    k: int = 20,
    temperature: float = 0.07,
    probe_epochs: int = 30,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-patch k-NN and (``probe_epochs > 0``) linear-probe scores on labelled patch features."""
    names = class_names or [str(c) for c in range(num_classes)]
    votes = knn_predict(train_features, train_labels, val_features, num_classes, k, temperature)
    result: dict[str, Any] = {"knn": {**_segmentation(votes.argmax(1), val_labels, num_classes, names), "k": k}}
    if probe_epochs > 0:
        from geodino.eval.linear import ProbeSettings, train_linear_probe

        probe = train_linear_probe(train_features, train_labels, ProbeSettings(epochs=probe_epochs, seed=seed),
                                   num_classes)
        with torch.no_grad():
            predicted = probe(val_features.float()).argmax(1)
        result["linear"] = {**_segmentation(predicted, val_labels, num_classes, names), "epochs": probe_epochs}
    result["num_train_patches"], result["num_val_patches"] = int(train_labels.numel()), int(val_labels.numel())
    return result


def _recipe_backbone(checkpoint: Path, random_init: bool) -> tuple[Backbone, DatasetCard, dict[str, Any]]:
    from geodino.eval.checkpoint import build_recipe_backbone, checkpoint_card, load_teacher_backbone

    if not random_init:
        return load_teacher_backbone(checkpoint)
    from geodino.runs.checkpoint import load_checkpoint

    cfg = load_checkpoint(checkpoint)["config"]
    card = checkpoint_card(checkpoint, cfg)
    # Seeded like pretraining, which builds the backbone first: the run's initial teacher backbone.
    torch.manual_seed(cfg["run"]["seed"])
    return build_recipe_backbone(cfg, card.num_bands).eval(), card, cfg


def dense_eval(
    checkpoint: str | Path,
    num_train: int | None = None,
    num_val: int | None = None,
    k: int = 20,
    probe_epochs: int = 30,
    random_init: bool = False,
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Dense scores of a pretraining checkpoint (or run folder) trained on the synthetic scenes.

    The labelled scenes are the recipe's held-out ``knn_train`` / ``knn_val`` sets (by default as
    many as its ``data.eval_train_samples`` / ``eval_val_samples``), seen at the global crop size.
    ``random_init`` scores the untrained backbone of the same recipe instead.
    """
    from geodino.data.synthetic import SyntheticScenes

    path = Path(checkpoint)
    path = path / "checkpoint.pt" if path.is_dir() else path
    backbone, card, cfg = _recipe_backbone(path, random_init)
    data = cfg["data"]
    if data.get("source") != "synthetic":
        raise ValueError(f"dense evaluation needs scenes with pixel class maps (data.source=synthetic); {path} "
                         f"was pretrained on data.source={data.get('source')!r}")
    num_classes, seed = int(data["num_classes"]), int(cfg["run"]["seed"])
    size = int(cfg["augment"]["global_size"])
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    backbone = backbone.to(device)
    sets = {}
    for role, split, count in (("train", "knn_train", num_train or data["eval_train_samples"]),
                               ("val", "knn_val", num_val or data["eval_val_samples"])):
        scenes = SyntheticScenes(count, data["image_size"], num_classes, seed=seed, split=split)
        sets[role] = extract_patch_features(backbone, scenes, card, size, num_classes, device=device, workers=-1,
                                            precision=precision)
    scores = dense_scores(*sets["train"], *sets["val"], num_classes, list(card.classes)[:num_classes], k=k,
                          probe_epochs=probe_epochs, seed=seed)
    return {"checkpoint": str(path), "random_init": random_init, "size": size,
            "precision": precision, **scores}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m geodino.eval.dense", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a run folder or its checkpoint.pt (pretrained on the synthetic scenes)")
    p.add_argument("--num-train", type=number(int, ge=1), default=None, help="labelled scenes for the bank / probe")
    p.add_argument("--num-val", type=number(int, ge=1), default=None, help="labelled scenes to score")
    p.add_argument("--k", type=number(int, ge=1), default=20)
    p.add_argument("--probe-epochs", type=number(int, ge=0), default=30, help="0 skips the linear probe")
    p.add_argument("--random-init", action="store_true", help="score the untrained backbone of the recipe")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default auto: the GPU when there is one)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="of the backbone's pass (default auto: bf16 on a GPU that has it, else fp32)")
    p.add_argument("--out", default=None, help="also write the JSON result here")
    args = p.parse_args(argv)
    result = dense_eval(args.checkpoint, args.num_train, args.num_val, args.k, args.probe_epochs,
                        args.random_init, args.device, args.precision)
    text = json.dumps(result)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
