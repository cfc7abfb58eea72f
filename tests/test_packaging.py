"""Recipes and dataset cards ship inside the package and are found by name from any folder
(.ci/wheel_smoke installs the real wheel and runs it outside the checkout)."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

import geodino
from geodino.cli import main
from geodino.config import ConfigError, load_config
from geodino.config.load import recipe_path
from geodino.data.card import CardError, DatasetCard
from geodino.resources import CARDS, RECIPES, packaged_folder, packaged_names

ROOT = Path(__file__).resolve().parents[1]


def test_recipes_and_cards_are_found_by_name_outside_the_checkout(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    expected = packaged_folder(RECIPES) / "imagenet_dino_vits16.yaml"
    for spelling in ("imagenet_dino_vits16", "imagenet_dino_vits16.yaml", "recipes/imagenet_dino_vits16.yaml"):
        assert recipe_path(spelling) == expected
    assert load_config("quickstart").model.arch == load_config(None).model.arch
    assert DatasetCard.load("bigearthnet-v2").num_bands == 14
    with pytest.raises(ConfigError, match="not found: give a YAML file or a packaged recipe .*quickstart"):
        load_config("quickstrat")
    with pytest.raises(CardError, match="known cards: .*imagenet"):
        DatasetCard.load("imagenett")


def test_a_file_of_the_same_name_wins_over_the_packaged_recipe(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart.yaml").write_text("model:\n  depth: 1\n")
    assert recipe_path("quickstart.yaml") == Path("quickstart.yaml")
    assert load_config("quickstart.yaml").model.depth == 1


def test_the_wheel_declares_every_packaged_file() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    root = Path(geodino.__file__).parent
    shipped = [p.relative_to(root).as_posix() for kind in (RECIPES, CARDS) for p in (root / kind).glob("*")]
    shipped.append("py.typed")
    for name in shipped:
        assert any(fnmatch(name, pattern) for pattern in package_data["geodino"]), name
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_geodino_recipes_lists_and_prints(capsys) -> None:
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    for name in packaged_names(RECIPES):
        assert f" {name} " in listing
    assert "geodino finetune seg seg_synthetic_quickstart" in listing
    assert main(["recipes", "quickstart"]) == 0
    assert capsys.readouterr().out == (packaged_folder(RECIPES) / "quickstart.yaml").read_text()
    assert main(["recipes", "nope"]) == 2
    assert "no packaged recipe 'nope'" in capsys.readouterr().err


def test_every_package_geodino_imports_is_a_declared_dependency_and_every_dependency_is_used():
    # A module imported but only brought in by another package breaks a wheel install the day that
    # package drops it; a declared one that nothing imports is weight on every install (kornia, once
    # geodino's augmentation no longer called it, stayed a dependency until this test).
    import ast
    import importlib.metadata as metadata
    import re
    import sys

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    imported = set()
    for path in Path(geodino.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    imported -= {*sys.stdlib_module_names, "geodino", "__future__"}
    owners = metadata.packages_distributions()
    used = {normal(owners.get(module, [module])[0]) for module in imported}
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    declared = {normal(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) for d in pyproject["project"]["dependencies"]}
    assert used <= declared, f"imported but not declared: {sorted(used - declared)}"
    # requests: torchgeo's datasets import it without declaring it; pyarrow: pandas' parquet engine
    # (the BigEarthNet v2 metadata); torchvision: timm and torchgeo need one matching torch.
    indirect = {"requests", "pyarrow", "torchvision"}
    assert declared - indirect <= used, f"declared but never imported: {sorted(declared - indirect - used)}"
