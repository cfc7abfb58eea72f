"""``geodino compare``: runs side by side, from run folders laid out as pretraining, ``geodino eval``
and ``geodino finetune seg`` write them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from geodino.cli import main
from geodino.eval.compare import collect_run, compare_runs, to_markdown


# -- run folders as the writers lay them out ------------------------------------------------------
def write_pretrain_run(path: Path, *overrides: str, steps: int = 40, loss: float | None = 5.5,
                       knn: dict | None = None) -> Path:
    """config.yaml as save_config writes it, metrics.jsonl lines and summary.json as the loop writes
    them, and knn.json when given."""
    from geodino.config import config_to_dict, load_config

    path.mkdir(parents=True)
    cfg = config_to_dict(load_config(None, [f"run.out_dir={path}", *overrides]))
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    lines = [{"step": s, "loss": 8.0 - s / steps * (8.0 - (loss or 5.5)), "lr": 1e-4} for s in range(10, steps + 1, 10)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    summary = {"steps": steps, "out_dir": str(path)}
    if loss is not None:
        summary["final_loss"] = loss
    if knn is not None:
        summary["knn"] = knn
        (path / "knn.json").write_text(json.dumps(knn, indent=2))
    (path / "summary.json").write_text(json.dumps(summary, indent=2))
    return path


def single_label_knn(random: float, trained: float) -> dict:
    """knn.json as the pretraining loop wrote it before it named its metric: top-1 only."""
    part = {"k": 20, "num_train": 1024, "num_val": 512}
    return {"random_teacher": {"top1": random, "top5": 60.0, **part},
            "trained_teacher": {"top1": trained, "top5": 80.0, **part}, "top1_gain": trained - random}


def multi_label_knn(random: float, trained: float) -> dict:
    """knn.json of a multi-label run: the loop names the headline metric and its gain."""
    part = {"k": 20, "num_train": 1024, "num_val": 512, "label": "labels19"}
    scores = {"map_macro": 30.0, "f1_micro": 40.0, "f1_macro": 20.0, "classes_evaluated": 19}
    return {"metric": "map_micro", "random_teacher": {"map_micro": random, **scores, **part},
            "trained_teacher": {"map_micro": trained, **scores, **part}, "gain": trained - random}


def write_eval_report(run: Path, protocol: str, results: dict[str, dict], folder: str = "eval",
                      multi: bool = False, **settings) -> Path:
    """``<run>/<folder>/<protocol>.json`` in the layout of geodino.eval.protocols._report."""
    defaults = ({"k": 20, "temperature": 0.07, "size": 32, "fill": 0.0} if protocol == "knn" else
                {"label_fraction": 1.0, "n_last_blocks": 4, "avgpool": False, "epochs": 100, "lr": 1e-3,
                 "weight_decay": 1e-4, "batch_size": 256, "seed": 0, "cache_dir": None, "size": 32, "fill": 0.0,
                 "train_used": 96})
    report = {"protocol": protocol, "checkpoint": str(run / "checkpoint.pt"), "card": "synthetic_sar_optical",
              "labels": "labels19" if multi else "label", "task": "multi-label" if multi else "single-label",
              "train": "shards/x (train split)", "val": "shards/x (val split)",
              "settings": {**defaults, **settings}, "results": results}
    out = run / folder / f"{protocol}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return out


def top(top1: float) -> dict:
    return {"top1": top1, "top5": 99.0, "k": 20, "num_train": 96, "num_val": 32}


def write_seg_run(path: Path, pretrained: str, miou: float) -> Path:
    """config.yaml (seg_config_to_dict), metrics.jsonl and metrics.json as finetune_segmentation writes them."""
    from geodino.finetune.config import SegConfig, seg_config_to_dict

    cfg = SegConfig()
    cfg.run.out_dir, cfg.model.pretrained = str(path), pretrained
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(seg_config_to_dict(cfg), sort_keys=False))
    (path / "metrics.jsonl").write_text(json.dumps({"step": 64, "epoch": 4, "loss": 0.7, "lr": 1e-6}) + "\n"
                                        + json.dumps({"step": 64, "epoch": 4, "val_miou": miou}) + "\n")
    summary = {"miou": miou, "overall_accuracy": 80.0, "per_class_iou": {"water": 50.0}, "classes_evaluated": 8,
               "pixels": 1000, "steps": 64, "backbone": "vit", "head": "upernet", "frozen_backbone": False,
               "classes": ["water"], "data": "synthetic", "train_seconds": 1.0, "out_dir": str(path)}
    (path / "metrics.json").write_text(json.dumps(summary, indent=2))
    return path


@pytest.fixture
def two_runs(tmp_path) -> tuple[Path, Path]:
    """An lr ablation: same recipe but for optim.lr (and bookkeeping: folder, logging); run a has a
    linear probe, run b does not."""
    a = write_pretrain_run(tmp_path / "runs" / "a", "optim.lr=0.0005", "train.log_every=5",
                           knn=single_label_knn(20.0, 31.5), loss=5.25)
    b = write_pretrain_run(tmp_path / "runs" / "b", "optim.lr=0.001", "train.log_every=50",
                           knn=single_label_knn(20.0, 35.0), loss=4.75)
    write_eval_report(a, "knn", {"s2": top(41.0), "s1": top(22.0), "s2+s1": top(44.0)})
    write_eval_report(b, "knn", {"s2": top(45.0), "s1": top(25.0), "s2+s1": top(48.5)})
    write_eval_report(a, "linear", {"s2": top(55.0), "s1": top(30.0), "s2+s1": top(60.0)})
    return a, b


# -- tests ----------------------------------------------------------------------------------------
def test_only_differing_settings_and_scores_in_their_cells(two_runs) -> None:
    a, b = two_runs
    comparison = compare_runs([a, b])
    assert [r["name"] for r in comparison["runs"]] == ["a", "b"]
    assert comparison["settings"] == {"optim.lr": [0.0005, 0.001]}  # run.out_dir and train.log_every ignored
    results = comparison["results"]
    assert results["steps"] == [40, 40] and results["final loss"] == [5.25, 4.75]
    assert results["pretrain k-NN top1, random teacher"] == [20.0, 20.0]
    assert results["pretrain k-NN top1, trained teacher"] == [31.5, 35.0]
    assert results["pretrain k-NN top1 gain"] == [11.5, 15.0]
    assert results["eval knn s1 top1"] == [22.0, 25.0] and results["eval knn s2+s1 top1"] == [44.0, 48.5]
    assert results["eval linear s2 top1"] == [55.0, None]  # b was never probed: blank, not an error
    markdown = to_markdown(comparison)
    assert "| `optim.lr` | 0.0005 | 0.001 |" in markdown
    assert "| pretrain k-NN top1 gain | +11.50 | +15.00 |" in markdown
    assert "| eval linear s2+s1 top1 | 60.00 |  |" in markdown
    assert "out_dir" not in markdown and "log_every" not in markdown and "top5" not in markdown


def test_missing_results_stay_blank(tmp_path) -> None:
    done = write_pretrain_run(tmp_path / "done", "optim.epochs=2", knn=single_label_knn(10.0, 12.0))
    # A run still going: no summary.json, no knn.json, no eval folder; its last logged step and loss count.
    going = write_pretrain_run(tmp_path / "going", "optim.epochs=3", steps=30, loss=6.0)
    (going / "summary.json").unlink()
    comparison = compare_runs([done, going])
    results = comparison["results"]
    assert results["steps"] == [40, 30] and results["final loss"][1] == pytest.approx(6.0)
    assert results["pretrain k-NN top1, trained teacher"] == [12.0, None]
    assert "| pretrain k-NN top1 gain | +2.00 |  |" in to_markdown(comparison)


def test_multi_label_headline_and_random_init_baseline(tmp_path) -> None:
    run = write_pretrain_run(tmp_path / "ben", knn=multi_label_knn(25.0, 40.0))
    labels = {"map_micro": 50.0, "map_macro": 35.0, "f1_micro": 45.0, "f1_macro": 30.0, "k": 20}
    write_eval_report(run, "knn", {"s2": labels, "s2+s1": {**labels, "map_micro": 55.0}}, multi=True)
    write_eval_report(run, "knn", {"s2": {**labels, "map_micro": 30.0}}, folder="eval_random_init", multi=True)
    results = collect_run(run)["results"]
    assert results["pretrain k-NN map_micro, random teacher"] == 25.0
    assert results["pretrain k-NN map_micro gain"] == 15.0
    assert results["eval knn s2 map_micro"] == 50.0 and results["eval knn s2+s1 map_micro"] == 55.0
    assert results["eval_random_init knn s2 map_micro"] == 30.0
    assert not any("top1" in key or "map_macro" in key for key in results)


def test_rows_keep_their_section_order_whichever_run_has_them(tmp_path) -> None:
    first = write_pretrain_run(tmp_path / "first", "optim.lr=0.001")
    write_seg_run(first / "seg", str(first / "checkpoint.pt"), 40.0)
    second = write_pretrain_run(tmp_path / "second", "optim.lr=0.002", knn=single_label_knn(10.0, 20.0))
    write_eval_report(second, "linear", {"all": top(50.0)})
    write_eval_report(second, "knn", {"all": top(30.0)}, folder="eval_random_init")
    write_eval_report(second, "knn", {"all": top(45.0)})
    assert list(compare_runs([first, second])["results"]) == [
        "steps", "final loss", "pretrain k-NN top1, random teacher", "pretrain k-NN top1, trained teacher",
        "pretrain k-NN top1 gain", "eval knn all top1", "eval linear all top1", "eval_random_init knn all top1",
        "seg mIoU (seg)"]


def test_evaluation_settings_show_when_they_differ(two_runs) -> None:
    a, b = two_runs
    write_eval_report(b, "linear", {"s2": top(50.0)}, label_fraction=0.01, train_used=1)
    settings = compare_runs([a, b])["settings"]
    assert settings["eval/linear.label_fraction"] == [1.0, 0.01]
    assert "eval/knn.k" not in settings and "eval/linear.cache_dir" not in settings


def test_modality_table_csv_stands_in_for_a_missing_report(two_runs) -> None:
    from geodino.eval.modality_table import table_rows, to_csv

    a, _ = two_runs
    (a / "eval" / "linear.json").unlink()
    rows = table_rows({"s2": top(55.0), "s1": top(30.0)}, ["s2", "s1"], ("top1", "top5"))
    (a / "eval" / "linear_modalities.csv").write_text(to_csv(rows, ("top1", "top5")))
    results = collect_run(a)["results"]
    assert results["eval linear s2 top1"] == 55.0 and results["eval linear s1 top1"] == 30.0


def test_segmentation_runs(tmp_path) -> None:
    pretrained = write_seg_run(tmp_path / "seg", "runs/quickstart/checkpoint.pt", 42.0)
    random = write_seg_run(tmp_path / "seg_random", "none", 30.5)
    comparison = compare_runs([pretrained, random])
    assert comparison["settings"] == {"model.pretrained": ["runs/quickstart/checkpoint.pt", "none"]}
    assert comparison["results"]["seg mIoU"] == [42.0, 30.5] and comparison["results"]["steps"] == [64, 64]
    assert [r["kind"] for r in comparison["runs"]] == ["segmentation", "segmentation"]
    # A fine-tuning run written inside a pretraining run's folder counts for that run.
    run = write_pretrain_run(tmp_path / "pre")
    write_seg_run(run / "seg", str(run / "checkpoint.pt"), 47.0)
    assert collect_run(run)["results"]["seg mIoU (seg)"] == 47.0


def test_cli_writes_table_csv_and_picture(two_runs, tmp_path, capsys) -> None:
    a, b = two_runs
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| `optim.lr` | 0.0005 | 0.001 |" in printed and str(out / "compare.png") in printed
    assert (out / "compare.md").read_text() in printed
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["run"] for r in rows] == ["a", "b"] and [r["optim.lr"] for r in rows] == ["0.0005", "0.001"]
    assert rows[0]["eval linear s2 top1"] == "55.0000" and rows[1]["eval linear s2 top1"] == ""
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))  # written atomically, no leftovers

    assert main(["compare", str(a), str(b), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["differing_settings"] == ["optim.lr"]
    assert report["runs"][1]["results"]["eval knn s2 top1"] == 45.0
    assert report["runs"][1]["results"]["eval linear s2 top1"] is None


def test_same_folder_names_are_told_apart(tmp_path) -> None:
    x = write_pretrain_run(tmp_path / "lr1" / "run", "optim.lr=0.001")
    y = write_pretrain_run(tmp_path / "lr2" / "run", "optim.lr=0.002")
    assert [r["name"] for r in compare_runs([x, y])["runs"]] == ["lr1/run", "lr2/run"]


@pytest.mark.parametrize("make", ["empty", "missing", "file", "no_results"])
def test_a_folder_that_is_no_run_is_one_line(two_runs, tmp_path, capsys, make) -> None:
    a, _ = two_runs
    bad = tmp_path / "not-a-run"
    if make == "empty":
        bad.mkdir()
    elif make == "file":
        bad.write_text("hello")
    elif make == "no_results":  # a config.yaml alone is a recipe, not a run
        bad.mkdir()
        shutil.copy(a / "config.yaml", bad / "config.yaml")
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(bad), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("geodino compare: error:") and str(bad) in captured.err
    assert not out.exists()


def test_a_real_pretraining_run(pretrained_checkpoint, tmp_path) -> None:
    """The run folder the tiny pretraining fixture writes (k-NN off: those rows are absent, not errors)."""
    run = pretrained_checkpoint.parent
    comparison = compare_runs([run, pretrained_checkpoint])  # a folder, or its checkpoint
    assert comparison["settings"] == {}
    assert comparison["results"]["steps"] == [3, 3]
    assert comparison["results"]["final loss"][0] > 0
    assert not any(key.startswith("pretrain k-NN") for key in comparison["results"])
