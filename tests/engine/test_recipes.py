"""The shipped recipes run end to end on tiny local data (RGB ImageNet folder; BigEarthNet shards)."""

import pytest

from geodino.config import load_config
from geodino.config.load import RECIPES_DIR
from geodino.engine.pretrain import pretrain
from geodino.runs.checkpoint import load_checkpoint
from tests.data.imagefolder.data import write_image_folder

SHRINK = [  # keep each recipe's data path, augmentation mode and objective; shrink the model and the steps
    "model.depth=1", "model.out_dim=64", "model.hidden_dim=32", "model.bottleneck_dim=16",
    "augment.global_size=32", "augment.local_size=16", "augment.n_local=2", "data.batch_size=2",
    "data.num_workers=0", "run.max_steps=2", "train.precision=no", "train.progress=false", "eval.knn=false",
]


@pytest.mark.parametrize("recipe", ["imagenet_dino_vits16.yaml", "imagenet_dino_vits16_boost.yaml"])
def test_imagenet_recipes_on_an_image_folder(tmp_path, recipe):
    root = write_image_folder(tmp_path / "train")
    cfg = load_config(RECIPES_DIR / recipe, [f"data.root={root}", f"run.out_dir={tmp_path / 'run'}",
                                             "data.image_size=48", *SHRINK])
    assert cfg.augment.mode == "rgb" and cfg.model.arch == "vit_small_patch16_224"
    summary = pretrain(cfg)
    assert summary["steps"] == 2
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["teacher"]["backbone.model.patch_embed.proj.weight"].shape[1] == 3


def test_dinomm_recipe_streams_bigearthnet_shards(tmp_path):
    from geodino.cli import main
    from tests.data.conftest import load_fixture_module

    tree = load_fixture_module("bigearthnet").write_v1(tmp_path / "ben", patches=6)
    shards = tmp_path / "shards"
    assert main(["shard", "bigearthnet", "--s2-root", str(tree["s2_root"]), "--s1-root", str(tree["s1_root"]),
                 "--out", str(shards), "--shard-size", "2", "--no-progress"]) == 0
    assert main(["stats", str(shards)]) == 0
    cfg = load_config(RECIPES_DIR / "bigearthnet_dinomm_vits8.yaml",
                      [f"data.root={shards}", f"run.out_dir={tmp_path / 'run'}", "data.samples_per_epoch=4", *SHRINK])
    assert cfg.augment.modality_drop_p == 0.5
    summary = pretrain(cfg)
    assert summary["steps"] == 2
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["teacher"]["backbone.model.patch_embed.proj.weight"].shape[1] == 14
