"""BigEarthNet v1 split CSVs: every file naming in use maps to train/val/test, a name that says no
split is one clear error, header rows are not patches, and the mapping is logged."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from geodino.cli import main
from geodino.data.sources import bigearthnet as ben


@pytest.mark.parametrize("names,splits", [
    (("train.csv", "val.csv", "test.csv"), ("train", "val", "test")),
    (("bigearthnet-train.csv", "bigearthnet-val.csv", "bigearthnet-test.csv"), ("train", "val", "test")),
    (("BigEarthNet_train.csv", "BigEarthNet_val.csv", "BigEarthNet_19_test.csv"), ("train", "val", "test")),
    (("training.csv", "validation.csv", "my_test.csv"), ("train", "val", "test")),
])
def test_split_csv_names_map_to_splits(ben_v1, tmp_path, names, splits, caplog) -> None:
    csvs = []
    for src, name in zip(ben_v1["split_csvs"], names):  # the fixture writes train, val, test
        csvs.append(tmp_path / name)
        shutil.copy(src, csvs[-1])
    with caplog.at_level(logging.INFO, logger="geodino.data.sources.bigearthnet"):
        patches, rejects = ben.list_v1(ben_v1["s2_root"], ben_v1["s1_root"], csvs)
    assert not rejects and sorted(p.split for p in patches) == ["test", "train", "train", "val"]
    for path, split in zip(csvs, splits):
        assert any(str(path) in r.getMessage() and f"split {split}" in r.getMessage() for r in caplog.records)


def test_split_csv_without_a_split_name_is_one_clear_error(ben_v1, tmp_path, capsys) -> None:
    bad = tmp_path / "pairs.csv"
    shutil.copy(ben_v1["split_csvs"][0], bad)
    rc = main(["shard", "bigearthnet", "--s2-root", str(ben_v1["s2_root"]), "--s1-root", str(ben_v1["s1_root"]),
               "--split-csv", str(ben_v1["split_csvs"][1]), str(bad), "--out", str(tmp_path / "out"),
               "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(bad) in err and "train, val, test" in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_missing_split_csvs_are_named_before_any_is_read(ben_v1, tmp_path) -> None:
    missing = [tmp_path / "val.csv", tmp_path / "pairs.csv"]  # missing says more than a name without a split
    with pytest.raises(FileNotFoundError, match=rf"^split CSV not found: {missing[0]}, {missing[1]}$"):
        ben.list_v1(ben_v1["s2_root"], ben_v1["s1_root"], [ben_v1["split_csvs"][0], *missing])


@pytest.mark.parametrize("header", ["s2_name,s1_name", "patch_id,s1_name", "S2,S1"])
def test_header_row_is_not_a_patch(ben_v1, tmp_path, header) -> None:
    rows = Path(ben_v1["split_csvs"][0]).read_text()
    path = tmp_path / "train.csv"
    path.write_text(f"{header}\n{rows}")
    patches, rejects = ben.list_v1(ben_v1["s2_root"], ben_v1["s1_root"], [path])
    assert not rejects and len(patches) == len(rows.splitlines()) == 2
    assert {p.split for p in patches} == {"train"}


def test_a_split_csv_saved_with_a_byte_order_mark_or_trailing_slashes_reads_every_patch(ben_v1, tmp_path) -> None:
    """Excel's "CSV UTF-8" starts with a BOM: the first patch became '\\ufeffS2A...' and was rejected
    as missing. `ls -p` names end in '/': the first row was then taken for a header, silently."""
    for variant, transform in (("bom", lambda text: "\ufeff" + text),
                               ("slash", lambda text: "\n".join(",".join(c + "/" for c in line.split(","))
                                                                for line in text.splitlines()) + "\n")):
        csvs = []
        for src in ben_v1["split_csvs"]:
            csvs.append(tmp_path / variant / Path(src).name)
            csvs[-1].parent.mkdir(exist_ok=True)
            csvs[-1].write_text(transform(Path(src).read_text()), encoding="utf-8")
        patches, rejects = ben.list_v1(ben_v1["s2_root"], ben_v1["s1_root"], csvs)
        assert not rejects and len(patches) == 4, (variant, rejects)


def test_excluded_patches_are_counted_and_a_bom_list_still_excludes(ben_v1, tmp_path, capsys) -> None:
    patches, _ = ben.list_v1(ben_v1["s2_root"], ben_v1["s1_root"], ben_v1["split_csvs"])
    exclude = tmp_path / "snow.csv"
    exclude.write_text("\ufeff" + sorted(p.key for p in patches)[0] + "\n", encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["shard", "bigearthnet", "--s2-root", str(ben_v1["s2_root"]), "--s1-root", str(ben_v1["s1_root"]),
               "--split-csv", *map(str, ben_v1["split_csvs"]), "--exclude", str(exclude), "--out", str(out),
               "--workers", "1", "--no-progress"])
    assert rc == 0 and "--exclude: 1 listed patch(es) left out" in capsys.readouterr().err
    import json

    index = json.loads((out / "index.json").read_text())
    assert index["source"]["excluded_patches"] == 1, index["source"]


def test_a_patch_listed_in_two_splits_is_refused_naming_it(ben_v1, tmp_path, capsys) -> None:
    """It was written to both train and val: leakage between training and evaluation."""
    train, val = (Path(p) for p in ben_v1["split_csvs"][:2])
    (tmp_path / "val.csv").write_text(val.read_text() + train.read_text().splitlines()[0] + "\n")
    rc = main(["shard", "bigearthnet", "--s2-root", str(ben_v1["s2_root"]), "--s1-root", str(ben_v1["s1_root"]),
               "--split-csv", str(train), str(tmp_path / "val.csv"), "--out", str(tmp_path / "out"),
               "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "is listed in both the 'train' and the 'val' split" in err, err
