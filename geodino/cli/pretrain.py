"""``geodino pretrain [RECIPE] [key=value ...]``: DINO pretraining from a recipe."""

from __future__ import annotations

import argparse
import json
import logging


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised DINO pretraining from a recipe",
        description="Pretrain a ViT with DINO. Without a recipe, runs the embedded quickstart "
        "(synthetic SAR-optical scenes, no download). Overrides use dotted keys: optim.lr=1e-4. "
        "A run continues automatically from the checkpoint in its output folder.",
    )
    p.add_argument("items", nargs="*", metavar="RECIPE|KEY=VALUE",
                   help="a recipe YAML or the name of a packaged recipe (`geodino recipes`), and dotted overrides")
    p.add_argument("--out", help="output folder (same as run.out_dir=...)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="resume from CHECKPOINT, or from the output folder's checkpoint (the default)")
    p.add_argument("--no-resume", action="store_true", help="start over even if the output folder has a checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    p.set_defaults(func=run, trailing_items="items")


def split_items(items: list[str]) -> tuple[str | None, list[str]]:
    recipes = [i for i in items if "=" not in i]
    if len(recipes) > 1:
        raise ValueError(f"one recipe at most, got {recipes}")
    return (recipes[0] if recipes else None), [i for i in items if "=" in i]


def run(args: argparse.Namespace) -> int:
    from geodino.config import config_to_dict, load_config

    recipe, overrides = split_items(args.items)
    # Each option is a spelling of one key; said twice, the two must not disagree unseen.
    if args.no_resume and args.resume:
        raise ValueError("--no-resume and --resume contradict each other: give one")
    spelled = {"run.out_dir": args.out, "run.resume": "never" if args.no_resume else args.resume}
    for key, value in spelled.items():
        if value is None:
            continue
        given = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].strip() == key]
        if any(g != value for g in given):
            option = {"run.out_dir": "--out", "run.resume": "--no-resume" if args.no_resume else "--resume"}[key]
            raise ValueError(f"{option} and {key}={given[-1]} disagree: give one")
        overrides.append(f"{key}={value}")
    # before loading: the recipe's keys that the run will not read are logged there
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(recipe, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        return 0

    from geodino.engine.pretrain import pretrain

    summary = pretrain(cfg)
    if "knn" in summary:
        knn = summary["knn"]
        metric, name = knn["metric"], {"top1": "top-1", "map_micro": "micro-mAP"}.get(knn["metric"], knn["metric"])
        start = "random teacher" if knn.get("initial", "random init") == "random init" else "initial teacher"
        print(f"k-NN {name} on held-out data: {start} {knn['random_teacher'][metric]:.1f}%, "
              f"trained teacher {knn['trained_teacher'][metric]:.1f}% ({knn['gain']:+.1f})")
    print(json.dumps(summary))
    return 0
