"""Dense (per-patch) evaluation: majority pooling by hand, scores on separable features, a run folder."""

import json

import torch

from geodino.config import config_to_dict, load_config
from geodino.eval.dense import dense_eval, dense_scores, main, patch_majority_labels
from geodino.objectives.networks import build_student_teacher
from tests.engine.runs import TINY


def test_patch_majority_labels_by_hand():
    mask = torch.tensor([[[0, 0, 1, 1],
                          [0, 2, 1, 1],
                          [3, 3, 2, 2],
                          [3, 1, 2, 0]]])
    # 2x2 patches of 2x2 pixels: {0,0,0,2} -> 0, {1,1,1,1} -> 1, {3,3,3,1} -> 3, {2,2,2,0} -> 2
    assert patch_majority_labels(mask, (2, 2), 4).tolist() == [[0, 1, 3, 2]]
    # One patch of the whole map: class 1 has 5 of the 16 pixels, 0 and 2 four, 3 three.
    assert patch_majority_labels(mask, (1, 1), 4).tolist() == [[1]]
    # A tie goes to the lower class.
    assert patch_majority_labels(torch.tensor([[[2, 1], [1, 2]]]), (1, 1), 3).tolist() == [[1]]


def test_scores_are_perfect_on_separable_patches():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=g) * 5
    train_y, val_y = torch.arange(3).repeat(40), torch.arange(3).repeat(10)
    train_x = centers[train_y] + torch.randn(120, 16, generator=g) * 0.1
    val_x = centers[val_y] + torch.randn(30, 16, generator=g) * 0.1
    scores = dense_scores(train_x, train_y, val_x, val_y, 3, k=5, probe_epochs=20)
    for protocol in ("knn", "linear"):
        assert scores[protocol]["patch_accuracy"] == 100.0 and scores[protocol]["miou"] == 100.0
    assert scores["num_train_patches"] == 120 and scores["num_val_patches"] == 30


def test_dense_eval_of_a_run_folder(tmp_path, capsys):
    cfg = load_config(None, [*TINY, f"run.out_dir={tmp_path}"])
    torch.manual_seed(0)
    _, teacher = build_student_teacher(cfg, in_chans=8)
    torch.save({"step": 0, "teacher": teacher.state_dict(), "config": config_to_dict(cfg)}, tmp_path / "checkpoint.pt")
    result = dense_eval(tmp_path, num_train=6, num_val=3, k=5, probe_epochs=2)
    assert result["num_train_patches"] == 6 * 16 and result["num_val_patches"] == 3 * 16  # 32 px / 8 px patches
    assert 0 <= result["knn"]["patch_accuracy"] <= 100 and 0 <= result["linear"]["miou"] <= 100
    assert main([str(tmp_path), "--num-train", "4", "--num-val", "2", "--probe-epochs", "0", "--random-init",
                 "--out", str(tmp_path / "dense.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["random_init"] and "linear" not in printed
    assert json.loads((tmp_path / "dense.json").read_text()) == printed
