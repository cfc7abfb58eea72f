"""Resume is decided on rank 0 and its state broadcast: on nodes without a shared filesystem, where
only rank 0's folder holds the checkpoint, every rank resumes at rank 0's step (issue 14)."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.engine.runs import assert_same_weights, env, pretrain_cmd, run_pretrain, teacher


@pytest.mark.slow
def test_ranks_resume_with_rank_0_where_only_rank_0_has_the_checkpoint(tmp_path):
    common = ("model.drop_path_rate=0", "train.checkpoint_every=2", "data.batch_size=8")  # 8 steps
    run_pretrain(tmp_path / "straight", *common, nproc=2)
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    node1.mkdir()
    run_pretrain(node0 / "run", *common, "run.max_steps=4", nproc=2)  # stopped at step 4

    # Two "nodes": the same relative run.out_dir, seen from two folders; only node 0's has the run.
    port = str(29500 + (os.getpid() + 7) % 1000)
    procs = []
    for rank, cwd in enumerate((node0, node1)):
        e = {**env(), "RANK": str(rank), "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1",
             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        procs.append(subprocess.Popen(pretrain_cmd(Path("run"), *common), cwd=cwd, env=e,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "resumed from run/checkpoint.pt at step 4" in outputs[0]
    assert_same_weights(teacher(tmp_path / "straight"), teacher(node0 / "run"), atol=1e-5)
    assert not (node1 / "run" / "checkpoint.pt").exists()  # rank 1 never writes
