"""Fixtures shared by the downstream tests (evaluation, fine-tuning, export, pictures): tiny
synthetic shards and tiny checkpoints of a 2-block ViT."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "engine"))
from runs import TINY, tiny_on  # noqa: E402  (the tiny pretraining recipe of the engine tests)


def make_checkpoint(path: Path, *overrides: str, source: str = "synthetic", root: str | Path = "") -> Path:
    """A checkpoint as pretraining writes it (teacher + recipe), of an untrained tiny network whose
    recipe names ``source`` (and ``root``)."""
    from geodino.config import config_to_dict, load_config
    from geodino.objectives.networks import build_student_teacher
    from geodino.eval.checkpoint import recipe_card

    base = TINY if source == "synthetic" else tiny_on(source, root)
    cfg = load_config(None, [*base, f"run.out_dir={path.parent}", *overrides])
    card = recipe_card(config_to_dict(cfg))
    torch.manual_seed(0)
    _, teacher = build_student_teacher(cfg, card.num_bands)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 0, "teacher": teacher.state_dict(), "config": config_to_dict(cfg)}, path)
    return path


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory) -> Path:
    """96 train + 32 val synthetic scenes of 32 px in 4 + 1 shards."""
    from geodino.data.sources.synthetic_shards import write_synthetic_shards

    out = tmp_path_factory.mktemp("synthetic-shards")
    write_synthetic_shards(out, num_samples=96, val_samples=32, image_size=32, shard_size=24, progress=False)
    return out


@pytest.fixture(scope="session")
def synthetic_checkpoint(tmp_path_factory) -> Path:
    """Untrained tiny ViT (2 blocks, 8-px patches, 32-px crops) with a synthetic-data recipe."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt-synthetic") / "checkpoint.pt")


@pytest.fixture(scope="session")
def pretrained_checkpoint(tmp_path_factory, synthetic_shards) -> Path:
    """The tiny ViT pretrained for 3 steps on the synthetic shards (data.source=shards)."""
    from geodino.config import load_config
    from geodino.engine.pretrain import pretrain
    from geodino.utils import torch_threads

    out = tmp_path_factory.mktemp("pretrained")
    cfg = load_config(None, [*tiny_on("shards", synthetic_shards), f"run.out_dir={out}",
                             "data.shuffle_buffer=32", "run.max_steps=3"])
    with torch_threads(1):
        pretrain(cfg)
    return out / "checkpoint.pt"


@pytest.fixture
def one_thread():
    """Tiny models on a machine whose cores other jobs keep busy run up to 10x faster on one thread."""
    from geodino.utils import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def checkpoint_factory():
    """:func:`make_checkpoint`, for tests that need a recipe of their own."""
    return make_checkpoint
