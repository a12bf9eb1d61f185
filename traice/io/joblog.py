"""What every workflow job does first: its stderr goes to the log file Snakemake names, its failure still
reaches the console, and the memory it frees is kept for reuse.

A job whose log cannot be written (a full disk, a vanished folder) would
otherwise fail in silence, with an empty log and only an exit status.
"""

from __future__ import annotations

import sys
from types import TracebackType

from traice.core.memory import reuse_freed_memory


def log_to(path: str) -> None:
    """Send this process's stderr (progress, warnings, tracebacks) to ``path``.

    An uncaught error is written there in full and, as one line
    ``error: <type>: <message>``, to the console's stderr as well.
    """
    console = sys.__stderr__
    try:
        sys.stderr = open(path, "w", buffering=1)
    except OSError as err:
        print(f"error: cannot write the job log {path}: {err}", file=console)
    report = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        try:
            report(kind, value, tb)
            sys.stderr.flush()
        except OSError:
            pass
        print(f"error: {kind.__name__}: {value}", file=console, flush=True)

    sys.excepthook = hook


def start_job(log: str) -> None:
    """Start a workflow job: its stderr to ``log`` (:func:`log_to`), and the memory it frees kept for its next
    arrays and tensors (:func:`traice.core.memory.reuse_freed_memory`)."""
    log_to(log)
    reuse_freed_memory()
