"""One run per run folder: ``run.lock`` names its holder, a lock on it says whether the holder lives.

Two ``geodino pretrain`` on one folder would interleave ``metrics.jsonl`` and overwrite each
other's checkpoints. The first takes an exclusive POSIX record lock (``lockf``) on
``<run>/run.lock`` and writes its host, PID and start time into it; a second finds the lock held
and refuses, naming the holder. The kernel drops the lock when its process dies, however it dies,
so a lock left by a killed run is taken over (with a warning naming the run that left it).

A record lock, not ``flock``: an ``flock`` belongs to the open file, which the data loader's forked
workers inherit, so a run killed with SIGKILL kept its folder locked for as long as its orphaned
workers lived. A record lock belongs to the process and is not inherited. It also works over NFS.
Record locks do not exclude the process that holds them, so this process keeps its own list. On
filesystems without record locks, the PID in the file decides, on this host only.
"""

from __future__ import annotations

import errno
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
_HELD: dict[str, dict[str, Any]] = {}  # run.lock files this process holds -> what it wrote in them


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
        key = str(self.path.resolve())
        if key in _HELD:  # record locks never exclude their own process; and opening the file
            # again, then closing it, would drop the lock this process holds
            raise self._busy(_HELD[key])
        f = open(self.path, "a+")
        f.seek(0)
        previous = _read(f.read())
        try:
            busy = False
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EAGAIN):
                busy = True
            else:  # no record locks on this filesystem: judge by the PID, on this host only
                busy = bool(previous) and (previous.get("host") != socket.gethostname() or _alive(previous.get("pid")))
        if busy:
            f.close()
            raise self._busy(previous)
        if previous:
            log.warning("taking over %s from a run that is no longer running (%s)", self.path, _describe(previous))
        f.seek(0)
        f.truncate()
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        f.write(json.dumps(holder) + "\n")
        f.flush()
        self._file = f
        _HELD[key] = holder
        removed = remove_stale_temps(self.path.parent)  # ours now: nobody else writes here
        if removed:
            log.warning("removed %d temporary file(s) of writes a killed run left in %s: %s", len(removed),
                        self.path.parent, ", ".join(p.name for p in removed))

    def _busy(self, holder: dict[str, Any]) -> RunFolderBusy:
        return RunFolderBusy(f"run folder {self.path.parent} is in use by {_describe(holder)}; wait for that run "
                             f"to end or use another run.out_dir (if it is gone, remove {self.path})")

    def release(self) -> None:
        if self._file is None:
            return
        self._file.seek(0)
        self._file.truncate()  # an empty lock file: released cleanly, nothing to take over
        self._file.flush()
        _HELD.pop(str(self.path.resolve()), None)
        fcntl.lockf(self._file, fcntl.LOCK_UN)
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
