"""The README's main job end to end: ``geodino pretrain`` on the embedded default, as a user runs it.

This is the slowest test of the suite (about 3.5 minutes on 2 cores): it trains the real quickstart
recipe for its full 192 steps, because the claim it checks, that DINO teaches the teacher something
a random network does not know, only holds for a real run. Every output the README lists is checked
too.
"""

from __future__ import annotations

import json

from geodino.cli import main

# The trained teacher's k-NN top-1 must beat the random teacher's (2048 held-out scenes, so 1 point
# is about 20 scenes). Measured with this recipe and data: +2.7 with seed 0 (56.3 -> 59.1 since the crop sizes
# are packed, session 12; 59.0 before; +2.9 before
# the augmentation drew from counter-based numbers, session 8), +3.4 with seed 1 (session 7). Runs that learned nothing useful landed near or below 0 (teacher momentum 0.9, whose
# teacher collapsed: -0.3). The data are not tuned to make this larger (issue 13): the figure is
# what it is, and the test only asks that the engine learns something on them.
MIN_GAIN = 1.0


def test_quickstart_teacher_beats_random_teacher(tmp_path) -> None:
    out = tmp_path / "quickstart"
    assert main(["pretrain", f"run.out_dir={out}", "train.progress=false"]) == 0

    for name in ("checkpoint.pt", "config.yaml", "card.yaml", "metrics.jsonl", "loss.png", "knn.json",
                 "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 192

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 192 and not any(r.get("collapse") for r in records)

    knn = json.loads((out / "knn.json").read_text())
    random_top1, trained_top1 = knn["random_teacher"]["top1"], knn["trained_teacher"]["top1"]
    assert knn["trained_teacher"]["num_val"] == 2048
    # chance is 12.5 % (8 classes); the random teacher already sees the spectral family of a scene
    assert 30 < random_top1 < 80
    assert trained_top1 - random_top1 >= MIN_GAIN, knn
