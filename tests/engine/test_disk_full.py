"""A write the file system refuses (a full disk, a quota, a file-size limit) ends a command in one
line naming the file, and leaves no temporary file (issue 14). torch's checkpoint writer reported it
as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos ..., an unexpected failure"."""

from __future__ import annotations

import subprocess
import sys

from tests.engine.runs import TINY, env

# The child limits the size of any file it writes (RLIMIT_FSIZE): a real refused write, as on a
# full disk, without a file system of our own. SIGXFSZ ignored: the write then fails with EFBIG.
LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
from geodino.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_refused_checkpoint_write_is_one_line_naming_the_file(tmp_path):
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, "-c", LIMITED, "pretrain", *TINY, f"run.out_dir={out}", "run.max_steps=1",
                          "eval.knn=false", "train.progress=false"], capture_output=True, text=True, env=env(),
                         timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"geodino pretrain: error: cannot write {out / 'checkpoint.pt'}: "), last
    assert "MiB free on its disk" in last and "Traceback" not in run.stderr
    assert not (out / "checkpoint.pt").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
