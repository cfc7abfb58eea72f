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


def test_one_logged_step_and_the_knn_results_are_drawn(tmp_path, monkeypatch) -> None:
    from geodino.viz import curves

    figures = []
    monkeypatch.setattr(curves, "save_figure", lambda fig, out, **kw: figures.append(fig))
    record = {"step": 1, "loss": 8.0, "loss_dino": 8.0, "lr": 1e-4, "teacher_entropy": 7.0,
              "teacher_kl_uniform": 0.2, "log_k": 8.3}
    knn = {"metric": "map_micro", "random_teacher": {"map_micro": 50.0}, "trained_teacher": {"map_micro": 55.0}}
    curves.plot_curves([record], tmp_path / "loss.png", knn=knn)
    loss, lr, knn_axis, collapse = figures[0].axes
    for axis in (loss, lr, collapse):  # a single point is drawn as a marker, not an invisible line
        assert all(line.get_marker() == "o" for line in axis.get_lines() if len(line.get_xdata()) == 1), axis.get_title()
    points = {tuple(line.get_xydata()[i]) for line in knn_axis.get_lines() for i in range(len(line.get_xdata()))}
    assert points == {(0.0, 50.0), (1.0, 55.0)}  # random teacher at step 0, trained at the last step
