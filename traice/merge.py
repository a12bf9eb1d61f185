"""Merge per-tile detections into one cell table with deterministic ``cell_id``s.

The owner rule already makes tiles disjoint; the radius merge here is only a
safety net (e.g. two maxima of one irregular soma on either side of a border).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from traice.io.tables import write_table
from traice.schema import CELLS, conform

def dedupe(points_um: np.ndarray, scores: np.ndarray, radius_um: float) -> np.ndarray:
    """Indices to keep: greedily, the highest score wins within ``radius_um`` (ties: lowest index)."""
    if len(points_um) == 0:
        return np.zeros(0, int)
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
    tree = cKDTree(points_um)
    removed = np.zeros(len(points_um), bool)
    keep = []
    for i in order:
        if removed[i]:
            continue
        keep.append(i)
        removed[tree.query_ball_point(points_um[i], radius_um)] = True
    return np.sort(np.asarray(keep, int))


def merge_detections(tables: Sequence[pd.DataFrame], spacing: Sequence[float], dedupe_um: float) -> pd.DataFrame:
    """One row per cell: ``cell_id`` 1..N ordered by position (z, y, x), µm and voxel centroids, score."""
    parts = [t for t in tables if len(t)]
    found = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["z", "y", "x", "score"])
    vox = found[["z", "y", "x"]].to_numpy(dtype=float).reshape(-1, 3)
    um = vox * np.asarray(spacing)
    keep = dedupe(um, found["score"].to_numpy(dtype=float), dedupe_um)
    vox, um, score = vox[keep], um[keep], found["score"].to_numpy(dtype=float)[keep]
    order = np.lexsort((vox[:, 2], vox[:, 1], vox[:, 0]))
    vox, um, score = vox[order], um[order], score[order]
    return conform(pd.DataFrame({
        "cell_id": np.arange(1, len(vox) + 1, dtype=np.int64),
        "z_um": um[:, 0], "y_um": um[:, 1], "x_um": um[:, 2],
        "z": np.rint(vox[:, 0]).astype(np.int64),
        "y": np.rint(vox[:, 1]).astype(np.int64),
        "x": np.rint(vox[:, 2]).astype(np.int64),
        "score": score,
    }), CELLS)


def merge_files(paths: Sequence[str | Path], spacing: Sequence[float], dedupe_um: float, out_path: str | Path) -> pd.DataFrame:
    cells = merge_detections([pd.read_parquet(p) for p in paths], spacing, dedupe_um)
    write_table(cells, out_path)
    return cells


def cell_batch(cells: pd.DataFrame, batch: int, cells_per_job: int) -> pd.DataFrame:
    """The cells of one batch: consecutive ``cell_id``s."""
    lo = batch * cells_per_job + 1
    return cells[(cells["cell_id"] >= lo) & (cells["cell_id"] < lo + cells_per_job)]


def n_cell_batches(n_cells: int, cells_per_job: int) -> int:
    return -(-n_cells // cells_per_job)
