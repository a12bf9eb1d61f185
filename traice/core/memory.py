"""How a process holds its memory: freed blocks are kept for reuse, not handed back to the kernel."""

from __future__ import annotations

import ctypes
import functools
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's ``mallopt`` parameters (``malloc.h``)."""

KEEP_FREED_BYTES = 1 << 30
"""Blocks up to this size come from malloc's heap, and this much freed memory stays in it
(:func:`reuse_freed_memory`)."""


@functools.lru_cache(maxsize=1)
def reuse_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of asking the kernel for fresh pages each time; True
    where that was set (Linux with glibc), False elsewhere (nothing changes there). Once per process.

    A CPU forward pass allocates and frees its activations layer by layer, and a per-cell step its arrays cell
    by cell. By default glibc serves each block above its mmap threshold (128 KiB, raised as blocks are freed,
    at most 32 MiB) from a fresh ``mmap`` and unmaps it when freed, and hands freed memory at the top of its
    heap back to the kernel: the next block arrives as new pages that the kernel zeroes on first touch. That
    was about 20 000 page faults per batch of the shipped network (2 windows of 16 x 128 x 128, one thread) and
    2.3 million in one detect job of the demo, which ran 13 % faster without them (docs/scale.md, "Freed
    memory"). Here blocks up to :data:`KEEP_FREED_BYTES` come from malloc's heap, and up to that much freed
    memory stays in it for the next ones. Every workflow job sets this first (:func:`traice.io.joblog.start_job`),
    as do the ``traice`` commands (:func:`traice.cli.main`) and the library's network runs;
    ``TRAICE_REUSE_MEMORY=0`` leaves malloc as it is."""
    if os.environ.get("TRAICE_REUSE_MEMORY", "").lower() in ("0", "false", "no"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # glibc, not musl
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_FREED_BYTES)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
