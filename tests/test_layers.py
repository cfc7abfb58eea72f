"""The package layout is a stack: each folder imports only from the folders below it.

Keeping the stack is what lets evaluation, fine-tuning and plotting read a run folder without the
pretraining engine, and what keeps ``models/`` free of training concerns.
"""

from __future__ import annotations

import ast
from pathlib import Path

import geodino

LAYERS = [
    {"utils", "rng", "resources"},
    {"runs", "speedups"},  # the run folder (checkpoints, metrics log, lock, signals, schedules); machine speed-ups
    {"config"},
    {"data", "models"},
    {"augment", "objectives"},
    {"eval"},
    {"viz", "export"},
    {"engine", "finetune"},
    {"bench"},
    {"cli", "__init__"},
    {"__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# config validates a recipe against the registries that give its names meaning (the data sources,
# the patch objectives); those imports sit inside the checks, at call time.
ALLOWED_UPWARD = {("config", "data"), ("config", "objectives")}


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "geodino":
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "geodino")
    return {n.split(".")[1] if "." in n else "__init__" for n in names}


def test_every_folder_imports_only_downward() -> None:
    root = Path(geodino.__file__).parent
    upward = []
    for path in sorted(root.rglob("*.py")):
        here = path.relative_to(root).with_suffix("").parts[0]
        assert here in RANK, f"{here}: a new folder needs a place in LAYERS"
        for there in imports_of(path) - {here}:
            if RANK[there] >= RANK[here] and (here, there) not in ALLOWED_UPWARD:
                upward.append(f"{path.relative_to(root)} imports geodino.{there}")
    assert not upward, "\n".join(upward)
