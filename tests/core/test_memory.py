"""Freed memory is reused, not asked of the kernel again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

FRESH_ALLOCATIONS = """
import resource, sys
import numpy as np
from traice.core.memory import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
np.ones(1 << 23)  # 64 MiB: above the largest block glibc serves from its heap by default
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(1 << 23)  # freed at once, as a job frees a cell's arrays or a layer's activations
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_freed_block_is_reused_not_faulted_in_again():
    """By default each 64 MiB block is a fresh mapping, faulted in page by page (4 KiB pages, or 2 MiB ones where
    transparent huge pages are on); reused, the freed block is already there."""
    faults = {mode: int(subprocess.run([sys.executable, "-c", FRESH_ALLOCATIONS, mode], check=True, capture_output=True,
                                       text=True).stdout) for mode in ("default", "reuse")}
    assert faults["default"] >= 5 * 32 and faults["reuse"] * 10 < faults["default"], faults


def test_switched_off_it_leaves_malloc_as_it_is():
    code = "from traice.core.memory import reuse_freed_memory; print(reuse_freed_memory())"
    env = {**os.environ, "TRAICE_REUSE_MEMORY": "0"}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    assert out.strip() == "False"
