"""The results-folder lock: taken, released, refused to a second live run, taken over after a kill."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from traice.core.errors import InputError
from traice.io.lock import acquire, release


def test_lock_is_taken_released_and_taken_over_after_a_kill(tmp_path):
    folder = tmp_path / "r"
    path = acquire(folder)
    assert acquire(folder) == path            # the same run may ask again
    release(folder)
    assert not path.exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(f'{{"host": "{socket.gethostname()}", "pid": {dead.pid}, "cwd": "/x", "started": "then"}}')
    assert acquire(folder) == path and f'"pid": {os.getpid()}' in path.read_text()  # stale: taken over
    release(folder)
    path.write_text('{"host": "another-node", "pid": 1, "cwd": "/x", "started": "then"}')
    with pytest.raises(InputError, match="in use by another traice run .*another-node"):
        acquire(folder)


def test_lock_file_appears_whole_and_a_live_takeover_is_given_back(tmp_path):
    """No half-written lock is ever visible, and no temporary files are left beside it."""
    folder = tmp_path / "r"
    path = acquire(folder)
    holder = path.read_text()
    assert '"pid"' in holder and sorted(p.name for p in folder.iterdir()) == [path.name]
    release(folder)
