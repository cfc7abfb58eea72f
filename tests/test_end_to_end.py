"""From data to downstream results in one run: synthetic shards → DINO pretraining (a few steps) →
export (timm, identical features) → k-NN and linear probe with the missing-modality table →
segmentation fine-tuning → scores and pictures."""

from __future__ import annotations

import csv
import json

import pytest
import timm
import torch

from geodino.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shards_to_segmentation(synthetic_shards, pretrained_checkpoint, tmp_path, capsys) -> None:
    run_dir = pretrained_checkpoint.parent
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 3

    # export → timm
    from geodino.eval.checkpoint import load_teacher_backbone

    assert main(["export", str(pretrained_checkpoint), "--out", str(tmp_path / "export")]) == 0
    model = timm.create_model(f"local-dir:{tmp_path / 'export'}", pretrained=True).eval()
    backbone, card, _ = load_teacher_backbone(pretrained_checkpoint)
    assert card.name == "synthetic-sar-optical"  # the card beside the pretraining shards
    x = torch.randn(3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), backbone(x).cls, rtol=1e-4, atol=1e-5)  # oneDNN vs MKL rounding

    # k-NN and linear probe on the shards, optical only / SAR only / both
    data = ["--train", str(synthetic_shards), "--val", str(synthetic_shards), "--modalities", "s2,s1,s2+s1"]
    assert main(["eval", "knn", str(pretrained_checkpoint), *data, "--out", str(tmp_path / "eval")]) == 0
    assert main(["eval", "linear", str(pretrained_checkpoint), *data, "--epochs", "10", "--label-fraction", "0.5",
                 "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| optical only | `s2` |") == 2 and printed.count("| SAR only | `s1` |") == 2
    for protocol in ("knn", "linear"):
        rows = list(csv.DictReader((tmp_path / "eval" / f"{protocol}_modalities.csv").open()))
        assert [r["modalities"] for r in rows] == ["s2", "s1", "s2+s1"]
        assert all(0 <= float(r["top1"]) <= 100 for r in rows)
        report = json.loads((tmp_path / "eval" / f"{protocol}.json").read_text())
        assert report["results"]["s2+s1"]["num_val"] == 32

    # segmentation on the shards' masks, from the pretrained teacher
    seg = tmp_path / "seg"
    assert main(["finetune", "seg", "seg_synthetic_quickstart", f"model.pretrained={pretrained_checkpoint}",
                 "data.source=shards", f"data.root={synthetic_shards}", "data.num_samples=16", "data.val_samples=8",
                 "data.batch_size=8", "model.decoder_channels=16", "train.epochs=1", "train.warmup_epochs=0",
                 "train.predictions=3", "--out", str(seg)]) == 0
    summary = json.loads((seg / "metrics.json").read_text())
    assert summary["steps"] == 2 and summary["pixels"] == 8 * 32 * 32 and 0 <= summary["miou"] <= 100
    assert set(summary["per_class_iou"]) == set(card.classes)
    assert len(list((seg / "predictions").glob("*.png"))) == 3

    # the synthetic scenes generated on the fly also evaluate a model pretrained on their shards
    assert main(["eval", "knn", str(pretrained_checkpoint), "--train", "synthetic", "--val", "synthetic",
                 "--num-samples", "16", "--val-samples", "8", "--out", str(tmp_path / "eval2")]) == 0

    # the run's curves and the teacher's attention
    assert main(["plot", str(run_dir)]) == 0 and (run_dir / "curves.png").is_file()
    assert main(["attention", str(pretrained_checkpoint), f"{synthetic_shards}#synthetic_val_0000000",
                 "--out", str(tmp_path / "attention")]) == 0
