"""One run per run folder; a folder that cannot be a run folder is a one-line error before the model
is built; temporary files of killed writes are removed (issue 14)."""

from __future__ import annotations

import json
import os
import socket

import pytest

from geodino.cli import main
from geodino.engine.pretrain import pretrain
from geodino.runs.lock import LOCK_NAME, RunFolderBusy, RunLock
from tests.engine.test_pretrain import _cfg


def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_holder(tmp_path, capsys):
    with RunLock(tmp_path):  # a first run holds the folder
        with pytest.raises(RunFolderBusy, match=rf"in use by PID {os.getpid()} on host {socket.gethostname()}"):
            pretrain(_cfg(tmp_path, "run.max_steps=1"))
        assert main(["pretrain", f"run.out_dir={tmp_path}", "run.max_steps=1", "train.progress=false"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is in use by PID" in err
        assert not (tmp_path / "metrics.jsonl").exists()  # refused before anything was written
    summary = pretrain(_cfg(tmp_path, "run.max_steps=1"))  # free again
    assert summary["steps"] == 1
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released cleanly


def test_a_lock_left_by_a_dead_run_is_taken_over_with_a_warning(tmp_path, caplog):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345,
                                                  "started": 0}))
    stale = tmp_path / ".checkpoint.pt.k3j2h1.tmp"  # a write killed half-way
    stale.write_bytes(b"half a checkpoint")
    with caplog.at_level("WARNING", logger="geodino"):
        assert pretrain(_cfg(tmp_path, "run.max_steps=1"))["steps"] == 1
    assert f"no longer running (PID {2**22 + 12345}" in caplog.text
    assert not stale.exists() and "removed 1 temporary file" in caplog.text


def test_a_file_where_the_run_folder_should_be_is_one_line(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    assert main(["pretrain", f"run.out_dir={tmp_path / 'taken' / 'run'}", "run.max_steps=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot create or write the run folder" in err


def test_a_killed_run_whose_forked_workers_live_on_does_not_keep_its_folder(tmp_path, caplog):
    # Found by CI: with flock, a run killed with SIGKILL kept the folder locked through the file its
    # orphaned data-loader workers had inherited, and the resumed run was refused.
    import signal
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, sys, time
        from geodino.runs.lock import RunLock
        lock = RunLock({str(tmp_path)!r})
        lock.acquire()
        if os.fork() == 0:  # a worker that outlives its parent
            time.sleep(60)
            os._exit(0)
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusy):
            RunLock(tmp_path).acquire()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with caplog.at_level("WARNING", logger="geodino"):
            lock = RunLock(tmp_path)
            lock.acquire()  # the orphan still has the file open
        lock.release()
        assert "no longer running" in caplog.text
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
