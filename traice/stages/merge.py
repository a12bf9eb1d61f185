"""Merge per-tile detections into one cell table with deterministic ``cell_id``s.

The owner rule already makes tiles disjoint; the radius merge here is only a
safety net (e.g. two maxima of one irregular soma on either side of a border).
Detections the process rule marked (``has_processes`` False,
:mod:`traice.stages.detect.processes`) are left out here and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from traice.core.geometry import Box
from traice.core.roi import cells_inside
from traice.core.schema import CELLS, conform, kept_by_the_rule
from traice.io.plan import Plan
from traice.io.tables import write_table


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


def update_cells(found: pd.DataFrame, previous: pd.DataFrame, roi: Sequence[Box], spacing: Sequence[float],
                 dedupe_um: float) -> pd.DataFrame:
    """The cell table of a run over the ``roi`` boxes: ``previous`` cells outside them kept, ``found`` ones inside.

    ``found`` is :func:`merge_detections`' table; its cells outside the ROI (tiles
    reach past it) and those within ``dedupe_um`` of a kept cell are dropped. A
    found cell matched (within ``dedupe_um``) to a replaced previous cell inherits
    its ``cell_id``; the others get new ids after the largest previous one, in
    position order. With no previous cells this is ``found`` with ids 1..N.
    """
    outside = ~cells_inside(previous, roi, spacing)
    kept, replaced = previous[outside], previous[~outside]
    found = found[cells_inside(found, roi, spacing)]
    um = found[["z_um", "y_um", "x_um"]].to_numpy(dtype=float).reshape(-1, 3)
    if len(kept) and len(found):
        near = cKDTree(kept[["z_um", "y_um", "x_um"]].to_numpy(dtype=float)).query(um)[0] <= dedupe_um
        found, um = found[~near], um[~near]
    ids = inherited_ids(um, replaced[["z_um", "y_um", "x_um"]].to_numpy(dtype=float), replaced["cell_id"].to_numpy(), dedupe_um)
    fresh = ids == 0
    start = int(previous["cell_id"].max()) + 1 if len(previous) else 1
    ids[fresh] = np.arange(start, start + int(fresh.sum()))
    cells = pd.concat([kept, found.assign(cell_id=ids)], ignore_index=True) if len(kept) else found.assign(cell_id=ids)
    return conform(cells.sort_values("cell_id", kind="stable").reset_index(drop=True), CELLS)


def inherited_ids(points_um: np.ndarray, old_um: np.ndarray, old_ids: np.ndarray, radius_um: float) -> np.ndarray:
    """For each of N points, the id of the old point it replaces (0 = none): closest pairs within ``radius_um`` first, one to one."""
    ids = np.zeros(len(points_um), np.int64)
    if len(points_um) == 0 or len(old_um) == 0:
        return ids
    pairs = cKDTree(points_um).sparse_distance_matrix(cKDTree(old_um), radius_um, output_type="ndarray")
    taken = set()
    for i, j, _ in sorted(pairs.tolist(), key=lambda p: (p[2], p[0], p[1])):
        if ids[int(i)] == 0 and int(j) not in taken:
            ids[int(i)] = old_ids[int(j)]
            taken.add(int(j))
    return ids


def merge_files(paths: Sequence[str | Path], plan: Plan, dedupe_um: float, out_path: str | Path,
                previous_path: str | Path | None = None, sample: str = "") -> tuple[pd.DataFrame, int]:
    """Merge detection files into ``out_path`` (its ``sample`` column set to ``sample``); over
    ``previous_path``'s cells for a region update. Returns the cells and the number of detections left out
    for having no processes (a table written without the ``has_processes`` column keeps all of its rows)."""
    tables = [pd.read_parquet(p) for p in paths]
    kept = [kept_by_the_rule(t) for t in tables]
    found = merge_detections([t[keep] for t, keep in zip(tables, kept)], plan.spacing, dedupe_um)
    previous = pd.read_parquet(previous_path) if previous_path is not None else found.iloc[:0]
    cells = update_cells(found, previous, plan.roi_boxes, plan.spacing, dedupe_um).assign(sample=sample)
    cells["sample"] = cells["sample"].astype(CELLS["sample"][0])
    write_table(cells, out_path)
    return cells, int(sum((~keep).sum() for keep in kept))
