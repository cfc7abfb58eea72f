"""The shipped recipes run end to end on tiny local data (RGB ImageNet folder; BigEarthNet shards)."""

import pytest

from geodino.config import load_config
from geodino.config.load import RECIPES_DIR
from geodino.engine.checkpoint import load_checkpoint
from geodino.engine.pretrain import pretrain
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
