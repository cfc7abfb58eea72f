"""``geodino finetune seg`` on tiny data: synthetic scenes, shards with ignored pixels, SEN12MS."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geodino.cli import main
from geodino.finetune.config import load_seg_config
from geodino.finetune.loop import finetune_segmentation

pytestmark = pytest.mark.usefixtures("one_thread")

HERE = Path(__file__).resolve().parent
# The backbone's shape keys are read for a random init only: a checkpoint brings its own.
TINY_BACKBONE = ["model.arch=vit_tiny_patch16_224", "model.depth=2", "model.patch_size=8"]
TINY_SEG = ["model.decoder_channels=16", "data.image_size=32", "data.batch_size=4", "data.num_samples=8",
            "data.val_samples=4",
            "train.epochs=1", "train.warmup_epochs=0", "train.log_every=1", "train.predictions=2"]
TINY_RANDOM = [*TINY_BACKBONE, *TINY_SEG]


def test_random_init_on_synthetic_scenes(tmp_path, capsys) -> None:
    out = tmp_path / "seg"
    argv = ["finetune", "seg", "seg_synthetic_quickstart", "model.pretrained=none", *TINY_RANDOM, "--out", str(out)]
    assert main(argv) == 0
    assert "mIoU" in capsys.readouterr().out
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["steps"] == 2 and 0 <= summary["miou"] <= 100 and len(summary["per_class_iou"]) == 8
    assert summary["pixels"] == 4 * 32 * 32
    assert sorted(p.name for p in (out / "predictions").glob("*.png")) == ["000.png", "001.png"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2] and "val_miou" in records[-1]
    state = torch.load(out / "segmentation.pt", weights_only=True)
    assert state["config"]["model"]["head"] == "upernet" and len(state["classes"]) == 8


def test_frozen_pretrained_backbone_keeps_its_weights(synthetic_checkpoint, tmp_path) -> None:
    from geodino.eval.checkpoint import load_teacher_backbone

    cfg = load_seg_config("seg_synthetic_quickstart", [f"model.pretrained={synthetic_checkpoint}", *TINY_SEG,
                                                       "model.head=linear", "model.freeze_backbone=true",
                                                       f"run.out_dir={tmp_path}"])
    finetune_segmentation(cfg)
    saved = torch.load(tmp_path / "segmentation.pt", weights_only=True)["model"]
    backbone, _, _ = load_teacher_backbone(synthetic_checkpoint)
    for name, value in backbone.state_dict().items():
        torch.testing.assert_close(saved[f"backbone.{name}"], value, rtol=0, atol=0)


def test_fine_tuning_starts_from_an_export_folder(synthetic_checkpoint, tmp_path) -> None:
    from geodino.eval.checkpoint import load_teacher_backbone

    export = tmp_path / "export"
    assert main(["export", str(synthetic_checkpoint), "--out", str(export)]) == 0
    cfg = load_seg_config("seg_synthetic_quickstart", [f"model.pretrained={export}", *TINY_SEG, "model.head=linear",
                                                       "model.freeze_backbone=true", f"run.out_dir={tmp_path / 'seg'}"])
    summary = finetune_segmentation(cfg)
    assert summary["backbone"] == f"vit_tiny_patch16_224 from export {export}"
    saved = torch.load(tmp_path / "seg" / "segmentation.pt", weights_only=True)["model"]
    backbone, _, _ = load_teacher_backbone(synthetic_checkpoint)
    for name, value in backbone.state_dict().items():  # the export's weights are the teacher's
        torch.testing.assert_close(saved[f"backbone.{name}"], value, rtol=0, atol=0)


def _masked_read(item, image_size, num_classes, seed):
    from geodino.data.sources.synthetic_shards import read_item

    parts = read_item(item, image_size, num_classes, seed)
    parts.mask[:, :8] = 255  # a strip without reference data, as reBEN maps have
    return parts


def test_shards_with_ignored_pixels(tmp_path) -> None:
    import functools

    from geodino.data.shards.writer import write_shards
    from geodino.data.sources.synthetic_shards import list_items
    from geodino.data.synthetic import synthetic_card

    shards = tmp_path / "shards"
    write_shards(shards, list_items(8, 4), functools.partial(_masked_read, image_size=32, num_classes=8, seed=0),
                 synthetic_card(), shard_size=8, progress=False)
    cfg = load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none", *TINY_RANDOM, "model.head=progressive",
                                                       "data.source=shards", f"data.root={shards}",
                                                       "data.num_samples=0", "data.val_samples=0",
                                                       f"run.out_dir={tmp_path / 'run'}"])
    summary = finetune_segmentation(cfg)
    assert summary["pixels"] == 4 * 32 * 24  # the 255 strip is not scored
    assert summary["steps"] == 2 and (tmp_path / "run" / "predictions" / "001.png").is_file()


def _sen12ms_fixture():
    spec = importlib.util.spec_from_file_location("geodino_fixture_sen12ms", HERE / "sen12ms" / "data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sen12ms_through_torchgeo(synthetic_checkpoint, tmp_path) -> None:
    from geodino.finetune.data import DFC_CLASSES, SEN12MSMasks

    root = _sen12ms_fixture().write_sen12ms(tmp_path / "sen12ms", train=4, test=2)["root"]
    bands = ["B02", "B03", "B04", "B08", "B11", "B12", "VH", "VV"]  # the synthetic card's order
    sample = SEN12MSMasks(str(root), "train", bands, "dfc")[0]
    assert sample["image"].shape == (8, 32, 32) and sample["image"].dtype == torch.float32
    assert float(sample["image"][6:].mean()) == pytest.approx(-15, abs=0.5)  # S1 dB kept as float
    assert set(np.unique(sample["mask"].numpy())) <= set(range(len(DFC_CLASSES)))
    cfg = load_seg_config("seg_synthetic_quickstart", [f"model.pretrained={synthetic_checkpoint}", *TINY_SEG,
                                                       "data.source=sen12ms", f"data.root={root}",
                                                       "data.num_samples=0", "data.val_samples=0",
                                                       f"run.out_dir={tmp_path / 'run'}"])
    summary = finetune_segmentation(cfg)
    assert summary["classes"] == DFC_CLASSES and summary["pixels"] == 2 * 32 * 32 and summary["steps"] == 1


def test_reben_recipe_split_names_resolve_on_shards(synthetic_shards, tmp_path, capsys) -> None:
    # The reBEN recipe's splits (train, val) as the shard writer names them; the network and the
    # steps shrunk to the tiny test size, the data keys left as the recipe has them.
    shrink = [*TINY_RANDOM, "model.img_size=32", "model.levels=[]", "data.num_workers=0", "train.eval_every=0"]
    argv = ["finetune", "seg", "seg_reben_upernet_vits16", "model.pretrained=none", f"data.root={synthetic_shards}",
            *shrink, "--out", str(tmp_path / "seg")]
    assert main(argv) == 0
    assert "mIoU" in capsys.readouterr().out
    cfg = load_seg_config("seg_reben_upernet_vits16", ["model.pretrained=none", f"data.root={synthetic_shards}",
                                                       "data.val_split=training"])
    from geodino.finetune.data import build_seg_data

    with pytest.raises(ValueError, match="are the same shards"):
        build_seg_data(cfg)


def test_a_diverged_fine_tuning_ends_in_one_line_naming_the_steps_and_saves_nothing(tmp_path, capsys) -> None:
    # The loss is judged on the device and read on logging steps only (every 2 steps here).
    out = tmp_path / "seg"
    argv = ["finetune", "seg", "seg_synthetic_quickstart", "model.pretrained=none", *TINY_RANDOM, "data.num_samples=16",
            "train.log_every=2", "train.lr=1e30", "model.head=linear", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "non-finite segmentation loss between steps 1 and 2 (nothing was saved)" in err
    assert not (out / "segmentation.pt").exists()


def test_the_summary_says_the_precision_and_device_it_ran_with(tmp_path) -> None:
    cfg = load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none", *TINY_RANDOM, "model.head=linear",
                                                       f"run.out_dir={tmp_path}", "run.precision=bf16"])
    summary = finetune_segmentation(cfg)
    assert summary["precision"] == "bf16" and summary["device"] == "cpu" and 0 <= summary["miou"] <= 100
    assert load_seg_config("seg_synthetic_quickstart", ["model.pretrained=none"]).run.precision == "auto"  # fp32 on a CPU, bf16 on a GPU
