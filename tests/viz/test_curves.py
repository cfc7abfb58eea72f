"""``geodino plot``: curves of a run folder, with k-NN points from the log and from knn.json."""

from __future__ import annotations

import json

from geodino.cli import main
from geodino.viz.curves import knn_series


def test_plot_run(tmp_path, capsys) -> None:
    records = [{"step": s, "loss": 8 - s / 10, "lr": 1e-3, "teacher_entropy": 7.0, "teacher_kl_uniform": 0.5,
                "log_k": 8.3} for s in range(1, 11)]
    records.insert(5, {"step": 5, "knn_top1": 40.0, "knn_top5": 90.0})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "knn.json").write_text(json.dumps({"random_teacher": {"top1": 30.0, "top5": 80.0},
                                                   "trained_teacher": {"top1": 50.0, "top5": 95.0}}))
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert str(tmp_path / "curves.png") in capsys.readouterr().out
    series = knn_series(records, json.loads((tmp_path / "knn.json").read_text()))
    assert series["top1"] == [(0, 30.0), (5, 40.0), (10, 50.0)]


def test_plot_refuses_a_folder_without_metrics(tmp_path, capsys) -> None:
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
