"""Bad samples of map-style sources (image folders) follow ``data.bad_samples`` as shards do.

Reproduces: a truncated JPEG in an image folder stopped pretraining with PIL's bare "Truncated File
Read" (no file named), and ``data.bad_samples=skip`` was ignored for image folders.
"""

from __future__ import annotations

import json

import pytest

from geodino.cli import main
from geodino.data.bad import BAD, BadDataError, ReportingBad, SampleError, collate_reporting_bad
from tests.data.imagefolder.data import write_image_folder
from tests.engine.test_recipes import SHRINK


class Numbers:
    """Samples 0..n-1; the indices in ``bad`` raise as an unreadable file would."""

    def __init__(self, n: int, bad: set[int]) -> None:
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        if index in self.bad:
            raise SampleError(f"img{index}.jpg", f"k{index}", "unreadable image: broken")
        return {"value": index}


def test_a_bad_sample_is_replaced_by_the_next_readable_one_and_reported() -> None:
    data = ReportingBad(Numbers(5, bad={1, 2}))
    assert data[0] == {"value": 0}
    sample = data[1]
    assert sample["value"] == 3
    assert [r["file"] for r in sample[BAD]] == ["img1.jpg", "img2.jpg"]
    assert data[4] == {"value": 4}
    wrapped = ReportingBad(Numbers(3, bad={2}))
    assert wrapped[2]["value"] == 0  # wraps around to the start
    batch = collate_reporting_bad([data[0], data[1], data[2]])
    assert batch["value"].tolist() == [0, 3, 3]
    assert [r["key"] for r in batch[BAD]] == ["k1", "k2", "k2"]
    assert BAD not in collate_reporting_bad([data[0], data[3]])


def test_a_dataset_that_cannot_be_read_at_all_stops_naming_its_first_file() -> None:
    with pytest.raises(BadDataError, match="3 samples in a row cannot be read, the first img0.jpg: unreadable"):
        ReportingBad(Numbers(3, bad={0, 1, 2}))[0]


def _truncated_folder(tmp_path):
    root = write_image_folder(tmp_path / "train")
    victim = root / "n01440764" / "n01440764_1.JPEG"
    victim.write_bytes(victim.read_bytes()[:200])
    return root, victim


def _pretrain(root, out, *extra) -> int:
    # 6 images, 2 per batch: 3 steps make one epoch, so every image is read once
    return main(["pretrain", "imagenet_dino_vits16", f"data.root={root}", f"run.out_dir={out}", "data.image_size=48",
                 *SHRINK, *extra])


def test_a_truncated_image_stops_pretraining_naming_the_file(tmp_path, capsys) -> None:
    root, victim = _truncated_folder(tmp_path)
    assert _pretrain(root, tmp_path / "run", "run.max_steps=3") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("geodino pretrain: error: bad sample: ")
    assert str(victim) in err and "sample n01440764_n01440764_1: unreadable image" in err
    assert "data.bad_samples=skip" in err


def test_skip_records_a_truncated_image_once_and_a_resumed_run_does_not_count_it_again(tmp_path) -> None:
    root, victim = _truncated_folder(tmp_path)
    out = tmp_path / "run"
    skip = ["data.bad_samples=skip", "data.max_bad_fraction=0.5"]
    assert _pretrain(root, out, "run.max_steps=3", *skip) == 0
    records = [json.loads(line) for line in (out / "bad_samples.jsonl").read_text().splitlines()]
    assert records == [{"rank": 0, "file": str(victim), "key": "n01440764_n01440764_1",
                        "reason": records[0]["reason"], "epoch": 0}]
    assert records[0]["reason"].startswith("unreadable image: ")
    # a second epoch, resumed from the checkpoint, reads the same file again
    assert _pretrain(root, out, "run.max_steps=6", *skip) == 0
    assert len((out / "bad_samples.jsonl").read_text().splitlines()) == 1
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 6 and metrics[-1]["bad_samples"] == 1


def test_more_bad_images_than_the_fraction_allows_stop_the_run(tmp_path, capsys) -> None:
    root, _ = _truncated_folder(tmp_path)
    assert _pretrain(root, tmp_path / "run", "run.max_steps=3", "data.bad_samples=skip",
                     "data.max_bad_fraction=0.1") == 2
    assert "1 bad samples, more than data.max_bad_fraction=0.1 of 6" in capsys.readouterr().err
