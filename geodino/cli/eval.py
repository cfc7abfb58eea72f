"""``geodino eval knn|linear CKPT --train DATA --val DATA``: frozen-feature evaluation of a checkpoint."""

from __future__ import annotations

import argparse
import math
from typing import Any

from geodino.config.schema import number
from geodino.utils import GPU_LOADER_WORKERS, PRECISIONS

DATA_HELP = ("a shard folder (train: its train split; val: its val split, else its test split), a tar, a brace "
             "pattern or glob, or 'synthetic' (the embedded scenes)")
SPLIT_HELP = "any spelling (validation = val); 'all': every shard"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="a geodino pretraining checkpoint (checkpoint.pt)")
    p.add_argument("--train", required=True, metavar="DATA", help=f"training / memory-bank data: {DATA_HELP}")
    p.add_argument("--val", required=True, metavar="DATA", help=f"validation data: {DATA_HELP}")
    p.add_argument("--label", default="auto",
                   help="which labels: auto (the first image-level label the data's card declares) or one the data "
                        "has, e.g. label, labels19, labels43 (the synthetic scenes: label, labels)")
    p.add_argument("--train-split", help=f"shard split to use as training data ({SPLIT_HELP})")
    p.add_argument("--val-split", help=f"shard split to use as validation data ({SPLIT_HELP}); never one that "
                                       "shares shards with the training data")
    p.add_argument("--num-samples", type=number(int, ge=1), help="training samples (synthetic: scenes; shards: the first N)")
    p.add_argument("--val-samples", type=number(int, ge=1), help="validation samples (synthetic: scenes; shards: the first N)")
    p.add_argument("--image-size", type=number(int, ge=1), help="size of the synthetic scenes (default: the recipe's)")
    p.add_argument("--size", type=number(int, ge=1), help="input size of the backbone (default: the recipe's global crop size)")
    p.add_argument("--modalities", metavar="CHOICES",
                   help="comma-separated modality choices, e.g. s2,s1,s2+s1: evaluate each with the other "
                        "modalities filled (missing-modality table)")
    p.add_argument("--fill", type=number(float),
                   help="standardised value of hidden bands, with --modalities (default 0 = the band mean)")
    p.add_argument("--card", help="dataset card (name or YAML) if the checkpoint's cannot be found")
    p.add_argument("--batch-size", type=number(int, ge=1), default=64)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default auto: the GPU when there is one)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="of the backbone's pass (default auto: bf16 on a GPU that has it, else fp32)")
    p.add_argument("--workers", type=number(int, ge=-1), default=-1,
                   help=f"data loader processes (default -1: {GPU_LOADER_WORKERS} with a GPU, 0 on the CPU)")
    p.add_argument("--random-init", action="store_true",
                   help="score the untrained backbone of the checkpoint's recipe instead of its teacher: the same "
                        "architecture, bands and card, initialised as pretraining with the recipe's run.seed "
                        "starts (the no-pretraining baseline)")
    p.add_argument("--out", help="output folder (default: <checkpoint folder>/eval, with --random-init "
                                 "<checkpoint folder>/eval_random_init)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(r) and r > 0 for r in rates):
        raise argparse.ArgumentTypeError(f"learning rates must be positive numbers, got {text!r}")
    return rates


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval", help="k-NN or linear-probe evaluation of a checkpoint's teacher",
        description="Evaluate the frozen teacher backbone of a checkpoint (with --random-init: the untrained "
                    "backbone of its recipe, as a baseline).")
    protocols = parser.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    knn = protocols.add_parser(
        "knn", help="weighted k-NN on L2-normalised CLS features",
        description="Weighted k-NN (votes exp(cos/T)) on the teacher's CLS features: top-1/top-5 for "
                    "single-label data, micro/macro mAP and F1 for multi-label data.")
    _common(knn)
    knn.add_argument("--k", type=number(int, ge=1), default=20)
    knn.add_argument("--temperature", type=number(float, gt=0), default=0.07)
    knn.set_defaults(func=run)
    linear = protocols.add_parser(
        "linear", help="linear probe on frozen features",
        description="Linear probe on the concatenated CLS tokens of the last blocks (+ average-pooled patch "
                    "tokens): cross-entropy and top-1 for single-label data, BCE with mAP and F1 for multi-label.")
    _common(linear)
    linear.add_argument("--label-fraction", type=number(float, gt=0, le=1), default=1.0,
                        help="fraction of the training samples to train on (seeded choice)")
    linear.add_argument("--n-last-blocks", type=number(int, ge=1), default=4)
    linear.add_argument("--avgpool", action="store_true", help="also the mean of the last block's patch tokens")
    linear.add_argument("--epochs", type=number(int, ge=1), default=100)
    linear.add_argument("--lr", type=_rates, metavar="LR[,LR...]",
                        help="probe learning rate, or several: each is trained on 80%% of the training set, the "
                             "one scoring best on the other 20%% is retrained on all of it (default: nine rates "
                             "from 1e-4 to 1)")
    linear.add_argument("--weight-decay", type=number(float, ge=0), default=1e-4)
    linear.add_argument("--seed", type=number(int, ge=0, lt=2**32), default=0)
    linear.add_argument("--cache", metavar="DIR", help="keep extracted features here (keyed by checkpoint, data, "
                                                       "options) and reuse them")
    linear.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import logging

    from geodino.eval.modality_table import split_choices
    from geodino.eval.protocols import (
        EvalData,
        EvalOptions,
        LinearSettings,
        default_out_dir,
        format_results,
        knn_eval,
        linear_eval,
    )

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data = EvalData(train=args.train, val=args.val, label=args.label, train_split=args.train_split,
                    val_split=args.val_split, train_samples=args.num_samples, val_samples=args.val_samples,
                    image_size=args.image_size)
    if args.fill is not None and not args.modalities:
        raise ValueError("--fill sets the bands --modalities hides; without --modalities no band is hidden")
    options = EvalOptions(fill=args.fill or 0.0, size=args.size, batch_size=args.batch_size, device=args.device,
                          precision=args.precision, workers=args.workers, card=args.card, progress=not args.json,
                          random_init=args.random_init)
    options.modalities = split_choices(args.modalities)  # checked against the card once it is loaded
    out = args.out or default_out_dir(args.checkpoint, args.random_init)
    if args.protocol == "knn":
        report = knn_eval(args.checkpoint, data, options, k=args.k, temperature=args.temperature, out_dir=out)
    else:
        settings = LinearSettings(label_fraction=args.label_fraction, n_last_blocks=args.n_last_blocks,
                                  avgpool=args.avgpool, epochs=args.epochs, weight_decay=args.weight_decay,
                                  seed=args.seed, cache_dir=args.cache)
        if args.lr:
            settings.lrs = args.lr
        report = linear_eval(args.checkpoint, data, options, settings, out_dir=out)
    print(json.dumps(report) if args.json else format_results(report))
    return 0
