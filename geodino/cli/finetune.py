"""``geodino finetune seg RECIPE [key=value ...]``: semantic segmentation on a pretrained ViT."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("finetune", help="fine-tune a pretrained backbone on a downstream task",
                                   description="Fine-tune a pretrained backbone on a downstream task.")
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    seg = tasks.add_parser(
        "seg", help="semantic segmentation (linear, progressive or UPerNet head)",
        description="Semantic segmentation from a recipe (seg_* in `geodino recipes`): a geodino checkpoint's teacher "
                    "(or a random init, model.pretrained=none) with a linear, progressive-upsampling or UPerNet "
                    "head, frozen or fine-tuned with layer-wise lr decay; reports mIoU, per-class IoU and "
                    "overall accuracy and draws predictions beside the ground truth.")
    seg.add_argument("items", nargs="+", metavar="RECIPE|KEY=VALUE",
                     help="a recipe YAML or the name of a packaged recipe, and dotted overrides, e.g. train.epochs=2")
    seg.add_argument("--out", help="output folder (same as run.out_dir=...)")
    seg.add_argument("--print-config", action="store_true", help="print the effective recipe and exit")
    seg.set_defaults(func=run, trailing_items="items")


def run(args: argparse.Namespace) -> int:
    import json
    import logging

    from geodino.cli.pretrain import split_items
    from geodino.finetune.config import load_seg_config, seg_config_to_dict

    recipe, overrides = split_items(args.items)
    if recipe is None:
        raise ValueError("a recipe is required, e.g. seg_synthetic_quickstart")
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    # before loading: the recipe's keys that the run will not read are logged there
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_seg_config(recipe, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(seg_config_to_dict(cfg), sort_keys=False))
        return 0
    from geodino.finetune.loop import finetune_segmentation

    summary = finetune_segmentation(cfg)
    ious = ", ".join(f"{name} {iou:.1f}" for name, iou in summary["per_class_iou"].items() if iou is not None)
    print(f"mIoU {summary['miou']:.2f}  overall accuracy {summary['overall_accuracy']:.2f}  "
          f"({summary['backbone']}, {summary['head']}, {summary['steps']} steps)")
    print(f"per-class IoU: {ious}")
    print(json.dumps({k: summary[k] for k in ("miou", "overall_accuracy", "out_dir")}))
    return 0
