"""Does a run pay, and is its teacher healthy: the k-NN check on shards (random teacher at step 0,
trained teacher during and after training), its warning, and the collapse verdicts."""

import json
import logging
import math


from geodino.config import load_config
from geodino.config.load import RECIPES_DIR
from geodino.engine.monitor import collapse_verdict
from geodino.engine.pretrain import Pretrainer, pretrain
from tests.engine.runs import TINY, tiny_on
from tests.engine.test_recipes import SHRINK


def _signals(entropy: float, mean_entropy: float, k: int = 4096) -> dict:
    log_k = math.log(k)
    return {"teacher_entropy": entropy, "teacher_kl_uniform": log_k - mean_entropy, "log_k": log_k}


def test_collapse_verdicts_hand_values() -> None:
    assert collapse_verdict(_signals(8.2, 8.3)) == "uniform"  # 8.2 > 0.98 * 8.318
    assert collapse_verdict(_signals(0.1, 0.1)) == "dominant"  # the batch mean on ~1 prototype
    # Each output on about one prototype while the batch still spreads over many: the entropy
    # floor (5 % of ln 4096 = 0.416 nats) flags it; the run the issue reports dipped to 0.27.
    assert collapse_verdict(_signals(0.27, 6.0)) == "one-hot"
    assert collapse_verdict(_signals(0.45, 6.0)) is None
    assert collapse_verdict(_signals(3.0, 7.5)) is None


def test_knn_check_runs_on_bigearthnet_shards_with_micro_map(tmp_path, caplog) -> None:
    from geodino.cli import main
    from tests.data.conftest import load_fixture_module

    tree = load_fixture_module("bigearthnet").write_v1(tmp_path / "ben", patches=8)
    shards = tmp_path / "shards"
    assert main(["shard", "bigearthnet", "--s2-root", str(tree["s2_root"]), "--s1-root", str(tree["s1_root"]),
                 "--split-csv", *map(str, tree["split_csvs"]), "--out", str(shards), "--shard-size", "1",
                 "--no-progress"]) == 0
    assert main(["stats", str(shards)]) == 0
    overrides = [f"data.root={shards}", f"run.out_dir={tmp_path / 'run'}", "data.samples_per_epoch=2", *SHRINK,
                 "eval.knn=true", "eval.knn_every=1", "eval.knn_k=2"]
    summary = pretrain(load_config(RECIPES_DIR / "bigearthnet_dinomm_vits8.yaml", overrides))
    knn = json.loads((tmp_path / "run" / "knn.json").read_text())
    assert knn["metric"] == "map_micro" and summary["knn"]["gain"] == knn["gain"]
    assert knn["trained_teacher"]["label"] == "labels19"
    splits = json.loads((shards / "index.json").read_text())["splits"]  # bank: train; queries: val
    assert knn["trained_teacher"]["num_train"] == splits["train"]["samples"]
    assert knn["trained_teacher"]["num_val"] == splits["val"]["samples"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "knn_map_micro" in r] == [0, 1, 2]


def test_shards_without_a_val_split_say_why_there_is_no_check(tmp_path, caplog) -> None:
    from geodino.data.sources.synthetic_shards import write_synthetic_shards

    shards = tmp_path / "shards"
    write_synthetic_shards(shards, num_samples=32, val_samples=8, image_size=32, shard_size=8, progress=False)
    for tar in shards.glob("val-*.tar"):
        tar.unlink()
    index = json.loads((shards / "index.json").read_text())
    index["shards"] = [s for s in index["shards"] if s["split"] != "val"]
    (shards / "index.json").write_text(json.dumps(index))
    cfg = load_config(None, [f"run.out_dir={tmp_path / 'run'}", *tiny_on("shards", shards),
                             "run.max_steps=1", "eval.knn=true"])
    with caplog.at_level(logging.INFO):
        summary = pretrain(cfg)
    assert "knn" not in summary and not (tmp_path / "run" / "knn.json").exists()
    assert "no k-NN check during pretraining" in caplog.text and "val" in caplog.text


def test_a_trained_teacher_below_the_random_one_is_reported(tmp_path, caplog) -> None:
    cfg = load_config(None, [f"run.out_dir={tmp_path}", *TINY, "run.max_steps=2"])
    trainer = Pretrainer(cfg)
    trainer.knn_random = {"top1": 60.0}
    trainer.step = trainer.total_steps
    with caplog.at_level(logging.WARNING):
        trainer._warn_if_not_paying({"top1": 55.0})
    assert "below the step-0 teacher's" in caplog.text and "top1 (55.0)" in caplog.text and "random init" in caplog.text
    caplog.clear()
    trainer._warn_if_not_paying({"top1": 65.0})
    trainer.step = 1  # still warming up: no verdict yet
    trainer._warn_if_not_paying({"top1": 10.0})
    assert not caplog.text
