"""One results folder, one writer: a lock file inside ``{results}/{sample}``.

Snakemake locks its working directory; two runs from different working
directories (``--directory``, another checkout, another login node) on the same
results would still write into each other. The lock lives with the results, so
every run sees it, wherever it starts:

- taken before the first job, released when the run ends (success, error, or
  the process exiting);
- a second run finds it and stops at once, naming the holder (host, pid, folder, time);
- after a hard kill the lock stays; the next run on the same host sees that its
  process is gone and takes it over. On another host it cannot tell: remove
  the file by hand once that run is known to be gone (the message says where).

The lock appears whole or not at all (written beside it, then hard-linked into
place), and a stale lock is taken over by renaming it away first, so of two
runs racing for it exactly one wins.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import time
import uuid
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
    """The lock's content; None when it is gone or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mine(holder: dict | None) -> bool:
    return bool(holder) and (holder.get("host"), holder.get("pid")) == (socket.gethostname(), os.getpid())


def _stale(holder: dict | None) -> bool:
    """Whether the lock's run is known to be gone: its process is dead on this host (or the lock is unreadable)."""
    if holder is None:
        return True
    return holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1)))


def acquire(folder: str | Path) -> Path:
    """Take the lock of a results folder (created if missing); InputError naming the holder when a live run has it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    mine = folder / f".{LOCK}.{uuid.uuid4().hex}"
    mine.write_text(json.dumps(_me()))
    try:
        for _ in range(3):
            try:
                os.link(mine, path)  # atomic: the lock appears whole, or fails if one is there
            except FileExistsError:
                holder = _holder(path)
                if _mine(holder):
                    return path
                if not _stale(holder):
                    raise InputError(
                        f"results folder {folder} is in use by another traice run (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, started {holder.get('started')}, from {holder.get('cwd')}); wait for "
                        f"it to end, or remove {path} once that run is known to be gone") from None
                away = folder / f".{LOCK}.stale.{uuid.uuid4().hex}"
                try:
                    os.rename(path, away)  # of two runs taking over, one renames it; the other finds it gone
                except FileNotFoundError:
                    continue
                if not _stale(_holder(away)):  # another run took it over in between: give it back
                    try:
                        os.link(away, path)
                    except FileExistsError:
                        pass
                away.unlink()
                continue
            atexit.register(release, folder)
            return path
        raise InputError(f"results folder {folder}: could not take the lock {path}")
    finally:
        mine.unlink(missing_ok=True)


def release(folder: str | Path) -> None:
    """Give the lock back if this process holds it."""
    path = Path(folder) / LOCK
    if _mine(_holder(path)):
        path.unlink(missing_ok=True)
