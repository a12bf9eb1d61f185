"""One results folder, one writer: a lock file inside ``{results}/{sample}``.

Snakemake locks its working directory; two runs from different working
directories (``--directory``, another checkout, another node) on the same
results would still write into each other. The lock lives with the results, so
every run sees it, wherever it starts:

- taken before the first job, released when the run ends (success or error);
- a second run finds it and stops at once, naming the holder (host, pid, folder, time);
- after a hard kill the lock stays; the next run on the same host sees that its
  process is gone and takes it over. On another host it cannot tell: remove
  the file by hand once that run is known to be gone (the message says where).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from traice.core.errors import InputError

LOCK = ".traice.lock"


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "cwd": os.getcwd(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _holder(path: Path) -> dict | None:
    """The lock's content; None when it is gone or unreadable (a lock half-written by a killed run)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def acquire(folder: str | Path) -> Path:
    """Take the lock of a results folder (created if missing); InputError naming the holder when a live run has it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    me = _me()
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder and (holder.get("host"), holder.get("pid")) == (me["host"], me["pid"]):
                return path  # this run holds it already
            stale = holder is None or (holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))))
            if not stale:
                raise InputError(
                    f"results folder {folder} is in use by another traice run (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, started {holder.get('started')}, from {holder.get('cwd')}); wait for it "
                    f"to end, or remove {path} once that run is known to be gone") from None
            path.unlink(missing_ok=True)  # its run was killed: take it over
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return path
    raise InputError(f"results folder {folder}: could not take the lock {path}")


def release(folder: str | Path) -> None:
    """Give the lock back if this process holds it."""
    path = Path(folder) / LOCK
    holder = _holder(path)
    if holder and (holder.get("host"), holder.get("pid")) == (socket.gethostname(), os.getpid()):
        path.unlink(missing_ok=True)
