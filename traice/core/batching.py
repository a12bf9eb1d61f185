"""Batches: how work is cut into jobs (tiles per detect job, cells per segment and morphology job).

A job's granularity is a batch. Its size adapts to the sample: at least
``per_job`` items, and more once that would make over ``max_jobs`` jobs, so a
small field gets a few quick jobs and a whole brain a bounded number of longer
ones, with no hand-tuning (:func:`batch_size`; stitch blocks: :func:`block_shape`). Batches are consecutive runs in
a fixed order, so the same items and settings always give the same jobs.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd


def batch_size(n_items: int, per_job: int, max_jobs: int) -> int:
    """Items per job: ``per_job``, or more so that ``n_items`` need at most ``max_jobs`` jobs."""
    if per_job <= 0 or max_jobs <= 0:
        raise ValueError("per_job and max_jobs must be positive")
    return max(per_job, -(-n_items // max_jobs))


def batches(n_items: int, per_batch: int) -> list[range]:
    """Split ``range(n_items)`` into consecutive batches of ``per_batch`` items."""
    if per_batch <= 0:
        raise ValueError("per_batch must be positive")
    return [range(a, min(a + per_batch, n_items)) for a in range(0, n_items, per_batch)]


def cell_batch(cells: pd.DataFrame, batch: int, per_batch: int) -> pd.DataFrame:
    """The cells of one batch: the ``batch``-th run of ``per_batch`` rows in ``cell_id`` order."""
    cells = cells.sort_values("cell_id", kind="stable")
    return cells.iloc[batch * per_batch:(batch + 1) * per_batch]


def n_batches(n_items: int, per_job: int, max_jobs: int) -> int:
    """How many jobs ``n_items`` make at :func:`batch_size` (at most ``max_jobs``)."""
    return -(-n_items // batch_size(n_items, per_job, max_jobs))


def blocks_touching(start: Sequence[int], stop: Sequence[int], block: Sequence[int]) -> int:
    """How many blocks of a grid of ``block`` voxels from the origin the box ``[start, stop)`` touches."""
    return math.prod(-(-b // s) - a // s for a, b, s in zip(start, stop, block)) if all(b > a for a, b in zip(start, stop)) else 0


def block_shape(chunk: Sequence[int], chunks_per_job: Sequence[int], shape: Sequence[int],
                boxes: Sequence[tuple[Sequence[int], Sequence[int]]], max_jobs: int) -> tuple[int, int, int]:
    """A stitch job's block of label chunks: ``chunks_per_job`` chunks, doubled along the axis with the most
    blocks until the blocks touching ``boxes`` ((start, stop) voxel boxes in an image of ``shape``) number at
    most ``max_jobs`` (or one block spans the image)."""
    if max_jobs <= 0:
        raise ValueError("max_jobs must be positive")
    per = list(chunks_per_job)
    while True:
        block = [c * n for c, n in zip(chunk, per)]
        if sum(blocks_touching(a, b, block) for a, b in boxes) <= max_jobs or all(s >= n for s, n in zip(block, shape)):
            return tuple(block)  # type: ignore[return-value]
        along = [-(-n // s) for n, s in zip(shape, block)]
        per[along.index(max(along))] *= 2
