"""``geodino recipes [NAME]``: the recipes packaged with geodino, or one of them in full (to copy
and edit: ``geodino recipes quickstart > mine.yaml``)."""

from __future__ import annotations

import argparse
import re
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "recipes", help="list the packaged recipes, or print one",
        description="Without a name: every recipe packaged with geodino, the command that runs it and the first "
                    "line of its description. With a name: that recipe's YAML, to copy and edit. A packaged "
                    "recipe is run by its name from any folder (`geodino pretrain imagenet_dino_vits16 ...`).")
    parser.add_argument("name", nargs="?", help="print this recipe's YAML")
    parser.set_defaults(func=run)


def summary(text: str, width: int = 100) -> str:
    """The first sentence of a recipe's header comment (to the first full stop that ends a
    sentence, or a colon), cut to ``width`` characters."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    words = " ".join(lines)
    match = re.search(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)\. |: ", words)
    if match:
        words = words[: match.start()]
    return words if len(words) <= width else words[: width - 1].rstrip() + "…"


def run(args: argparse.Namespace) -> int:
    from geodino.cli import CommandError
    from geodino.resources import RECIPES, packaged_file, packaged_names

    names = packaged_names(RECIPES)
    if args.name:
        path = packaged_file(RECIPES, args.name.removesuffix(".yaml"))
        if path is None:
            raise CommandError(f"no packaged recipe {args.name!r} (packaged: {', '.join(names)})")
        print(path.read_text(), end="")
        return 0
    rows = []
    for name in names:
        command = "geodino finetune seg" if name.startswith("seg_") else "geodino pretrain"
        rows.append((f"{command} {name}", summary(packaged_file(RECIPES, name).read_text())))
    width = max(len(c) for c, _ in rows)
    for command, text in rows:
        print(f"{command:<{width}}  {text}")
    return 0
