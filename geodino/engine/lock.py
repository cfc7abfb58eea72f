"""One run per run folder: ``run.lock`` names its holder, an ``flock`` on it says whether the holder lives.

Two ``geodino pretrain`` on one folder would interleave ``metrics.jsonl`` and overwrite each
other's checkpoints. The first takes an exclusive ``flock`` on ``<run>/run.lock`` and writes its host,
PID and start time into it; a second finds the lock held and refuses, naming the holder. The kernel
drops the lock when its process dies, however it dies, so a lock left by a killed run is taken over
(with a warning naming the run that left it). On filesystems without ``flock`` the lock still holds
between processes of one machine.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

from geodino.utils import remove_stale_temps

log = logging.getLogger("geodino")

LOCK_NAME = "run.lock"


class RunFolderBusy(OSError):
    """Another live run holds the run folder."""


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"PID {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {since}"


class RunLock:
    """Hold ``<folder>/run.lock`` while entered (main process only)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        f.seek(0)
        previous = _read(f.read())
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            busy = False
        except BlockingIOError:
            busy = True
        except OSError:  # no flock on this filesystem: judge by the PID, on this host only
            busy = bool(previous) and (previous.get("host") != socket.gethostname() or _alive(previous.get("pid")))
        if busy:
            f.close()
            raise RunFolderBusy(f"run folder {self.path.parent} is in use by {_describe(previous)}; wait for that "
                                f"run to end or use another run.out_dir (if it is gone, remove {self.path})")
        if previous:
            log.warning("taking over %s from a run that is no longer running (%s)", self.path, _describe(previous))
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}) + "\n")
        f.flush()
        self._file = f
        removed = remove_stale_temps(self.path.parent)  # ours now: nobody else writes here
        if removed:
            log.warning("removed %d temporary file(s) of writes a killed run left in %s: %s", len(removed),
                        self.path.parent, ", ".join(p.name for p in removed))

    def release(self) -> None:
        if self._file is None:
            return
        self._file.seek(0)
        self._file.truncate()  # an empty lock file: released cleanly, nothing to take over
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _read(text: str) -> dict[str, Any]:
    try:
        holder = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {"pid": "?", "host": "?"}
    return holder if isinstance(holder, dict) else {}
