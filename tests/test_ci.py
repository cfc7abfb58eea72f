"""`.ci/run` runs the README's test command verbatim and stops where it fails.

The second test replays the failure of a CI run whose machine ran out of disk during the install:
`set -e` ignores a failure inside an `&&` list, so the script went on to the wheel smoke, which
reported a missing ``timm`` instead of the full disk. Here a stand-in ``pip`` fails the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("Set up and run the tests", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    command = readme_test_command()
    assert "pytest" in command and "constraints.txt" in command
    assert command in (ROOT / ".ci/run").read_text()


def _stand_in(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


def test_ci_stops_at_a_failed_install_and_says_so(tmp_path) -> None:
    repo, bin_dir = tmp_path / "repo", tmp_path / "bin"
    (repo / ".ci").mkdir(parents=True)
    bin_dir.mkdir()
    shutil.copy(ROOT / ".ci/run", repo / ".ci/run")
    marker = tmp_path / "wheel_smoke_ran"
    (repo / ".ci/wheel_smoke").write_text(f"touch {marker}\n")
    # `python3 -m venv .venv` makes an activate script that does nothing; pip then fails as the
    # full disk made it fail.
    _stand_in(bin_dir / "python3", 'mkdir -p .venv/bin && : > .venv/bin/activate\n')
    _stand_in(bin_dir / "pip", 'echo "ERROR: [Errno 28] No space left on device" >&2; exit 1\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(repo / ".ci/run")], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert not marker.exists(), "the wheel smoke ran after the install had failed"
    assert "No space left on device" in result.stderr
    assert "CI: the README's test command failed (exit 1)" in result.stderr
    assert "GiB free under" in result.stdout
