"""``geodino eval knn|linear`` on synthetic scenes and on shards, with the missing-modality table."""

from __future__ import annotations

import csv
import json

import pytest

from geodino.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_knn_synthetic_multilabel_with_modality_table(synthetic_checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", "synthetic", "--val", "synthetic",
            "--num-samples", "24", "--val-samples", "8", "--label", "labels", "--k", "50",
            "--modalities", "s2,s1,s2+s1", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| SAR only | `s1` |" in text and "map_micro" in text
    report = json.loads((out / "knn.json").read_text())
    assert report["task"] == "multi-label" and list(report["results"]) == ["s2", "s1", "s2+s1"]
    assert report["results"]["s1"]["num_train"] == 24  # k = 50 > 24 training scenes
    rows = list(csv.DictReader((out / "knn_modalities.csv").open()))
    assert [r["input"] for r in rows] == ["optical only", "SAR only", "both (optical+SAR)"]
    assert (out / "knn_modalities.png").stat().st_size > 0 and (out / "knn_modalities.md").is_file()


def test_knn_on_shards_single_label(synthetic_checkpoint, synthetic_shards, tmp_path, capsys) -> None:
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", str(synthetic_shards), "--val",
            str(synthetic_shards), "--val-samples", "10", "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == "label" and report["results"]["all"]["num_train"] == 96
    assert report["results"]["all"]["num_val"] == 10 and 0 <= report["results"]["all"]["top1"] <= 100


def test_modalities_are_checked_against_the_card(synthetic_checkpoint, tmp_path, capsys) -> None:
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", "synthetic", "--val", "synthetic",
            "--modalities", "s2,rgb", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "'rgb'" in capsys.readouterr().err


def test_linear_caches_features(synthetic_checkpoint, synthetic_shards, tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    argv = ["eval", "linear", str(synthetic_checkpoint), "--train", str(synthetic_shards), "--val",
            str(synthetic_shards), "--n-last-blocks", "2", "--avgpool", "--epochs", "5", "--cache", str(cache),
            "--label-fraction", "0.5", "--modalities", "s2,s2+s1", "--out", str(tmp_path / "out"), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["settings"]["train_used"] == 48
    assert first["results"]["s2"]["feature_dim"] == 2 * 192 + 192  # 2 CLS tokens + pooled patches
    assert len(list(cache.glob("*.pt"))) == 2  # train and val features
    stamps = {p: p.stat().st_mtime_ns for p in cache.glob("*.pt")}
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["results"] == first["results"]  # same features, same seed
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*.pt")} == stamps  # read back, not recomputed
    assert (tmp_path / "out" / "linear_modalities.csv").is_file()
    # 48 training samples: the rate is chosen on 10 of them, and the report says which and why
    assert first["settings"]["lrs"] == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]
    chosen = first["results"]["s2"]
    assert set(chosen["lr_selection"]["scores"]) == {"0.0001", "0.0003", "0.001", "0.003", "0.01", "0.03", "0.1",
                                                     "0.3", "1"}
    assert chosen["lr"] in first["settings"]["lrs"]
    assert main([*argv, "--lr", "0.01"]) == 0
    fixed = json.loads(capsys.readouterr().out)
    assert fixed["settings"]["lrs"] == [0.01] and fixed["results"]["s2"]["lr"] == 0.01
    assert "lr_selection" not in fixed["results"]["s2"]
    with pytest.raises(SystemExit):
        main([*argv, "--lr", "0.01,fast"])
    assert "expected comma-separated numbers, got '0.01,fast'" in capsys.readouterr().err


def test_val_data_without_a_val_or_test_split_is_refused(synthetic_checkpoint, tmp_path, capsys) -> None:
    from tests.data.test_splits import write_split_shards

    train_only = write_split_shards(tmp_path / "train-only", {"train": 4})
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", str(train_only), "--val", str(train_only),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "has no val or test split (it has train)" in err and "--val-split" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_the_memory_bank_is_never_the_validation_data(synthetic_checkpoint, synthetic_shards, tmp_path,
                                                      capsys) -> None:
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", str(synthetic_shards), "--val",
            str(synthetic_shards), "--val-split", "training", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "are the same shards" in capsys.readouterr().err


def test_split_names_take_any_spelling(synthetic_checkpoint, synthetic_shards, tmp_path, capsys) -> None:
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", str(synthetic_shards), "--train-split", "training",
            "--val", str(synthetic_shards), "--val-split", "validation", "--val-samples", "4", "--out",
            str(tmp_path), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["val"] == (f"the first 4 samples of the val split of {synthetic_shards} (2 shards, 32 samples); "
                             "left out: train (4 shards, 96 samples)")
    assert report["results"]["all"]["num_train"] == 96 and report["results"]["all"]["num_val"] == 4


def test_knn_on_shards_served_over_http_and_through_a_pipe(synthetic_checkpoint, synthetic_shards, tmp_path,
                                                          capsys) -> None:
    """Remote --train/--val give the scores of the local folder."""
    from tests.data.shards.tiny import serve_folder

    def knn(train: str, val: str) -> dict:
        argv = ["eval", "knn", str(synthetic_checkpoint), "--train", train, "--val", val, "--val-samples", "10",
                "--out", str(tmp_path / "out"), "--json"]
        assert main(argv) == 0
        return json.loads(capsys.readouterr().out)["results"]

    local = knn(str(synthetic_shards), str(synthetic_shards))
    with serve_folder(synthetic_shards) as base:
        served = knn(f"{base}/train-{{000000..000003}}.tar", f"{base}/val-000000.tar")
    piped = knn(f"pipe:cat {synthetic_shards}/train-{{000000..000003}}.tar",
                f"pipe:cat {synthetic_shards}/val-000000.tar")
    assert served == local and piped == local
    # The same remote shards as memory bank and queries: refused, never scored.
    assert main(["eval", "knn", str(synthetic_checkpoint), "--train", f"pipe:cat {synthetic_shards}/val-000000.tar",
                 "--val", f"pipe:cat {synthetic_shards}/val-000000.tar", "--out", str(tmp_path / "x")]) == 2
    assert "are the same shards" in capsys.readouterr().err


def test_a_nan_sample_stops_evaluation_naming_it(synthetic_checkpoint, synthetic_shards, tmp_path, capsys) -> None:
    """It used to be scored (exit 0, f1 0.00, mAP halved)."""
    import shutil
    import tarfile

    import numpy as np

    from geodino.data.shards.format import add_members

    copy = tmp_path / "shards"
    shutil.copytree(synthetic_shards, copy)
    val = copy / "val-000000.tar"
    with tarfile.open(val) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    name, data = next((n, d) for n, d in members if n.endswith(".image.bands"))
    nan = np.frombuffer(data, dtype="<f4").copy()
    nan[:] = np.nan
    members = [(n, nan.tobytes() if n == name else d) for n, d in members]
    with tarfile.open(val, "w") as tar:
        add_members(tar, members)
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", str(copy), "--val", str(copy),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"sample {name.split('.')[0]}: non-finite pixels" in err and "val-000000.tar" in err


def test_library_callers_are_refused_evaluation_on_the_memory_bank(synthetic_checkpoint, synthetic_shards) -> None:
    from geodino.data.splits import SplitError
    from geodino.eval.protocols import EvalData, EvalOptions, knn_eval

    data = EvalData(train=str(synthetic_shards), val=str(synthetic_shards), train_split="val", val_split="val")
    with pytest.raises(SplitError, match="are the same shards"):
        knn_eval(synthetic_checkpoint, data, EvalOptions())


def test_a_cnn_linear_probe_reports_the_features_it_used_not_the_vit_options(checkpoint_factory, synthetic_shards,
                                                                             tmp_path, caplog) -> None:
    """--avgpool on a ResNet checkpoint was ignored, yet linear.json recorded it as applied."""
    import logging

    from geodino.eval.protocols import EvalData, EvalOptions, LinearSettings, linear_eval

    checkpoint = checkpoint_factory(tmp_path / "cnn" / "checkpoint.pt", "model.arch=resnet18", "model.depth=0",
                                    "model.patch_size=0")
    data = EvalData(train=str(synthetic_shards), val=str(synthetic_shards), train_samples=16, val_samples=8)
    with caplog.at_level(logging.WARNING, logger="geodino"):
        report = linear_eval(checkpoint, data, EvalOptions(device="cpu"), LinearSettings(avgpool=True, epochs=1))
    assert report["settings"]["avgpool"] is False and report["settings"]["n_last_blocks"] == 0, report["settings"]
    assert "apply to ViTs" in caplog.text


def test_the_report_says_the_precision_and_loader_processes_it_ran_with(synthetic_checkpoint, synthetic_shards,
                                                                        tmp_path, capsys) -> None:
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", str(synthetic_shards), "--val",
            str(synthetic_shards), "--val-samples", "10", "--out", str(tmp_path), "--json", "--workers", "2",
            "--precision", "bf16"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["precision"] == "bf16" and report["settings"]["loader_workers"] == 2
    assert report["results"]["all"]["num_train"] == 96 and report["results"]["all"]["num_val"] == 10
    assert main(argv[:-4]) == 0  # defaults on a CPU: fp32, no loader processes
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["precision"] == "fp32" and report["settings"]["loader_workers"] == 0


def test_options_that_would_change_nothing_are_refused(synthetic_checkpoint, synthetic_shards, tmp_path, capsys) -> None:
    # --image-size sizes generated scenes only; on shards it was ignored without a word
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", str(synthetic_shards), "--val", str(synthetic_shards),
            "--image-size", "64", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--image-size sizes the generated synthetic scenes; shards are read as stored" in capsys.readouterr().err
    # --fill without --modalities hides no band
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", "synthetic", "--val", "synthetic", "--fill", "1.5",
            "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--fill sets the bands --modalities hides; without --modalities no band is hidden" in \
        capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["eval", "knn", "c.pt", "--train", "synthetic", "--val", "synthetic", "--fill", "nan"],
     "argument --fill: must be a finite number, got nan"),
    (["eval", "linear", "c.pt", "--train", "synthetic", "--val", "synthetic", "--lr", "0.1,nan"],
     "learning rates must be positive numbers, got '0.1,nan'"),
])
def test_non_finite_numbers_are_refused_by_option(capsys, argv, message) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err
