"""The README's snippets that load a geodino export with timm, torchgeo and TerraTorch, run on real exports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from geodino.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")
README = Path(__file__).resolve().parents[1] / "README.md"


def _snippets() -> list[str]:
    section = README.read_text().split("## Exporting to timm, torchgeo and TerraTorch", 1)[1].split("\n## ", 1)[0]
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

    torchgeo_snippet = next(s for s in _snippets() if "from torchgeo" in s)
    task = _run(torchgeo_snippet, default_shape_export)["task"]
    weights = load_file(default_shape_export / "model.safetensors")
    own = task.model.state_dict()
    for name, value in weights.items():  # every backbone tensor, the new classifier aside
        assert torch.equal(own[name], value), name
    assert own["head.weight"].shape == (10, weights["norm.weight"].shape[0])


def test_the_terratorch_snippet_loads_a_non_default_shape_with_every_block(tmp_path) -> None:
    """TerraTorch's timm route on an export of another shape than timm's default (8 bands, 8-px
    patches, 2 blocks, 32 px): every tensor but the final norm, which its feature maps skip."""
    pytest.importorskip("terratorch")
    from safetensors.torch import load_file

    from tests.conftest import make_checkpoint

    checkpoint = make_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "export")]) == 0
    snippet = next(s for s in _snippets() if "terratorch" in s)
    backbone = _run(snippet, tmp_path / "export")["backbone"]
    own = backbone.state_dict()
    weights = load_file(tmp_path / "export" / "model.safetensors")
    assert {name for name in weights if f"model.{name}" not in own} == {"norm.weight", "norm.bias"}
    for name, value in weights.items():
        if f"model.{name}" in own:
            assert torch.equal(own[f"model.{name}"], value), name
    (features,) = backbone(torch.randn(2, weights["patch_embed.proj.weight"].shape[1], 32, 32))
    assert features.shape == (2, 192, 4, 4)
