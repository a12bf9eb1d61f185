"""Batches: how work is cut into jobs (tiles per detect job, cells per segment and morphology job).

A job's granularity is a batch, sized in config, so the job count stays in the
hundreds to thousands for a whole brain. Batches are consecutive runs in a
fixed order, so the same items and batch size always give the same jobs.
"""

from __future__ import annotations

import pandas as pd


def batches(n_items: int, per_batch: int) -> list[range]:
    """Split ``range(n_items)`` into consecutive batches of ``per_batch`` items."""
    if per_batch <= 0:
        raise ValueError("per_batch must be positive")
    return [range(a, min(a + per_batch, n_items)) for a in range(0, n_items, per_batch)]


def cell_batch(cells: pd.DataFrame, batch: int, cells_per_job: int) -> pd.DataFrame:
    """The cells of one batch: the ``batch``-th run of ``cells_per_job`` rows in ``cell_id`` order."""
    cells = cells.sort_values("cell_id", kind="stable")
    return cells.iloc[batch * cells_per_job:(batch + 1) * cells_per_job]


def n_cell_batches(n_cells: int, cells_per_job: int) -> int:
    """How many batches of ``cells_per_job`` hold ``n_cells`` cells."""
    return -(-n_cells // cells_per_job)
