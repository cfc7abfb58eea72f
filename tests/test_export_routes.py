"""The README's snippets that load a geodino export with timm and with torchgeo, run on a real export."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from geodino.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
README = Path(__file__).resolve().parents[1] / "README.md"


def _snippets() -> list[str]:
    section = README.read_text().split("## Exporting to timm and torchgeo", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def default_shape_export(tmp_path_factory) -> Path:
    """An export of a ViT-Tiny/16 at 224 px, 12 blocks: the architecture's default shape."""
    from tests.conftest import make_checkpoint

    folder = tmp_path_factory.mktemp("export-default")
    checkpoint = make_checkpoint(folder / "run" / "checkpoint.pt", "model.depth=0", "model.patch_size=0",
                                 "augment.global_size=224")
    assert main(["export", str(checkpoint), "--out", str(folder / "export")]) == 0
    return folder / "export"


def _run(snippet: str, export: Path) -> dict:
    scope: dict = {}
    exec(compile(snippet.replace("path/to/export", str(export)), "README.md", "exec"), scope)
    return scope


def test_the_timm_snippet_loads_every_tensor(default_shape_export) -> None:
    from safetensors.torch import load_file

    timm_snippet = next(s for s in _snippets() if "import timm" in s)
    model = _run(timm_snippet, default_shape_export)["model"]
    for name, value in load_file(default_shape_export / "model.safetensors").items():
        assert torch.equal(model.state_dict()[name], value), name


def test_the_torchgeo_snippet_builds_a_trainer_with_the_weights(default_shape_export) -> None:
    pytest.importorskip("torchgeo.trainers")
    from safetensors.torch import load_file

    torchgeo_snippet = next(s for s in _snippets() if "torchgeo" in s)
    task = _run(torchgeo_snippet, default_shape_export)["task"]
    weights = load_file(default_shape_export / "model.safetensors")
    own = task.model.state_dict()
    for name, value in weights.items():  # every backbone tensor, the new classifier aside
        assert torch.equal(own[name], value), name
    assert own["head.weight"].shape == (10, weights["norm.weight"].shape[0])
