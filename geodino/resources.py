"""The files that ship inside the package: recipes and dataset cards.

They are read through :mod:`importlib.resources`, so they are found the same way from a source
checkout, an editable install and a wheel installed anywhere; a recipe or card is named without
its folder or extension (``quickstart``, ``bigearthnet-v2``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

RECIPES = "recipes"
CARDS = "datasets"


def packaged_folder(kind: str) -> Path:
    """The installed folder of ``kind`` (:data:`RECIPES` or :data:`CARDS`); the package is always
    unpacked on disk (pip installs wheels unpacked), so it is a real folder."""
    return Path(str(files("geodino").joinpath(kind)))


def packaged_names(kind: str) -> list[str]:
    folder = packaged_folder(kind)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def packaged_file(kind: str, name: str) -> Path | None:
    """``<kind>/<name>.yaml`` inside the package, or None."""
    path = packaged_folder(kind) / f"{name}.yaml"
    return path if path.is_file() else None
