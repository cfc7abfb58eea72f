"""Preemption: SIGTERM / SIGUSR1 / SIGINT finish the step, write a checkpoint, exit 75 with one line;
the same command continues to the teacher an uninterrupted run ends with (issue 14)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from geodino.runs.checkpoint import load_checkpoint
from geodino.runs.stop import EXIT_STOPPED, StopRequests
from tests.engine.runs import assert_same_weights, env, losses, pretrain_cmd, run_pretrain, teacher

# 12 steps; two loader workers, which must outlive a signal sent to the whole process group.
OVERRIDES = ("data.num_samples=96", "data.num_workers=2", "train.checkpoint_every=5")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    run_pretrain(out, *OVERRIDES)
    return out


def _logged_steps(out_dir) -> int:
    path = out_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    return max((json.loads(line).get("step", 0) for line in path.read_text().splitlines() if line), default=0)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_writes_a_checkpoint_and_the_same_command_continues(tmp_path, straight, sig):
    out = tmp_path / "stopped"
    # Its own process group: the signal reaches the loader workers too, as a scheduler's does.
    proc = subprocess.Popen(pretrain_cmd(out, *OVERRIDES), env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    while _logged_steps(out) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == EXIT_STOPPED, stderr[-3000:]
    stopped_at = load_checkpoint(out / "checkpoint.pt")["step"]
    assert 3 <= stopped_at < 12
    last_line = stderr.strip().splitlines()[-1]
    assert last_line == (f"geodino: stopped by {sig.name} at step {stopped_at}; checkpoint written to "
                         f"{out / 'checkpoint.pt'}; re-run the same command to continue")
    assert "Traceback" not in stderr
    assert not (out / "summary.json").exists()

    run_pretrain(out, *OVERRIDES)
    assert_same_weights(teacher(straight), teacher(out), atol=1e-6)
    assert losses(out) == pytest.approx(losses(straight), abs=1e-6)


def test_ctrl_c_once_asks_to_stop_and_twice_stops_at_once():
    # What was there before: Python's default handler, or SIG_IGN in a background job of a shell
    # without job control (how this test met it in a backgrounded `bash .ci/run`).
    before = signal.getsignal(signal.SIGINT)
    with StopRequests() as stops:
        assert stops.agreed() == 0
        os.kill(os.getpid(), signal.SIGINT)
        assert stops.agreed() == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # restored on exit


def test_any_command_stopped_by_a_signal_ends_in_one_line_and_exit_75(monkeypatch, capsys):
    # geodino bench pays trains through pretrain() too: the stop is one line there as well.
    from geodino.cli import main
    from geodino.runs.stop import RunStopped

    def stopped(args):
        raise RunStopped(signal.SIGTERM, 52, "/runs/x/checkpoint.pt")

    monkeypatch.setattr("geodino.bench.pays.run", stopped)
    assert main(["bench", "pays", "--out", "/nonexistent"]) == EXIT_STOPPED
    err = capsys.readouterr().err.strip()
    assert err == ("geodino: stopped by SIGTERM at step 52; checkpoint written to /runs/x/checkpoint.pt; "
                   "re-run the same command to continue")


def test_processes_agree_one_step_later_on_a_stop_only_one_of_them_was_sent(tmp_path):
    # A scheduler's signal can reach the processes of a run at different steps; they must all stop
    # after the same step, or the others would wait forever in the next step's all-reduce.
    import sys
    from pathlib import Path

    script = Path(__file__).parent / "stop_ddp_run.py"
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "store")], capture_output=True, text=True,
                         timeout=180, env=env())
    assert run.returncode == 0, run.stderr[-3000:]
    per_rank = json.loads(run.stdout.strip().splitlines()[-1])
    assert per_rank == [[0, 0, 0, signal.SIGUSR1, signal.SIGUSR1]] * 2
