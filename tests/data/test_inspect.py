"""Shard inspection: the JSON report, label names, band ranges and the preview picture."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from geodino.cli import main
from geodino.data.shards.format import expand_shards
from geodino.data.shards.read import iter_samples


def test_json_report(ben_v1_shards, tmp_path, capsys) -> None:
    preview = tmp_path / "p.png"
    assert main(["inspect", str(ben_v1_shards), "--json", "--preview", str(preview)]) == 0
    report = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    data = np.stack([s["image"] for s in iter_samples(expand_shards(ben_v1_shards))])
    assert report["samples"] == 4 and report["shape"] == [14, 120, 120] and report["dtype"] == "float32"
    assert report["splits"] == {"test": 1, "train": 2, "val": 1}
    assert report["bands"][-2:] == ["VH", "VV"]
    vv = report["band_stats"]["VV"]
    assert np.isclose(vv["min"], data[:, 13].min()) and np.isclose(vv["max"], data[:, 13].max())
    assert np.isclose(vv["mean"], data[:, 13].astype(np.float64).mean())
    # Fixture labels (4 patches): Pastures once, Marine waters once, Airports (dropped) once in 43.
    assert report["labels19_frequency"]["Marine waters"] == 1 and report["labels43_frequency"]["Airports"] == 1
    assert "Airports" not in report["labels19_frequency"]
    with Image.open(preview) as img:
        assert img.size[0] > 100 and img.size[1] > 100
    assert report["preview"] == str(preview)


def test_text_report_and_default_preview(ben_v1_shards, capsys) -> None:
    assert main(["inspect", f"{ben_v1_shards}/train-{{000000..000001}}.tar"]) == 0
    text = capsys.readouterr().out
    assert "samples: 2" in text and "labels19_frequency:" in text and "VH" in text
    assert (ben_v1_shards / "preview.png").is_file()


def test_rgb_shards(image_folder, tmp_path, capsys) -> None:
    out = tmp_path / "shards"
    assert main(["shard", "imagefolder", "--root", str(image_folder), "--out", str(out), "--workers", "1",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dtype"] == "jpeg" and report["bands"] == ["R", "G", "B"]
    assert report["label_frequency"] == {"n01440764": 3, "n01443537": 3}
    assert all(0.0 <= s["min"] and s["max"] <= 1.0 for s in report["band_stats"].values())
    assert (out / "preview.png").is_file()
