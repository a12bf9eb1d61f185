"""Per-cell claims: how segment jobs store cells and stitch reads them.

A *claim* is a uint8 crop of one cell where 0 = not this cell and 1..255 =
this cell, the value growing with the confidence that the voxel belongs to it;
``stitch`` gives a voxel claimed by several cells to the highest claim. A
segment job stores its cells' claims as one zarr group (one array per cell,
named by ``cell_id``, cropped to the cell's box) plus ``index.parquet``
(``INDEX_COLUMNS``: the box, the claimed voxel count and the status).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import zarr

from traice.core.geometry import Box
from traice.io.tables import atomic_dir, write_table

INDEX_COLUMNS = ["cell_id", "voxels", "status", "box_z0", "box_z1", "box_y0", "box_y1", "box_x0", "box_x1"]


@dataclass
class CellMask:
    cell_id: int
    box: Box                 # level-0 voxels
    claim: np.ndarray        # uint8, box.shape
    status: str              # "ok" or why the mask is empty


def write_masks(masks: list[CellMask], path: str | Path) -> pd.DataFrame:
    """Store claims as one zarr group (one array per cell, named by cell_id) plus its index table.

    Written to a temporary folder and renamed, so a killed job leaves nothing half-written.
    """
    with atomic_dir(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        rows = []
        for m in masks:
            arr = group.create_array(str(m.cell_id), shape=m.claim.shape, chunks=m.claim.shape, dtype=np.uint8, fill_value=0)
            arr[...] = m.claim
            rows.append({"cell_id": m.cell_id, "voxels": int(np.count_nonzero(m.claim)), "status": m.status, **m.box.as_row("box")})
        index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
        write_table(index, tmp / "index.parquet")
    return index


def read_claim(masks_path: str | Path, cell_id: int) -> np.ndarray:
    return np.asarray(zarr.open_array(str(Path(masks_path) / str(cell_id)), mode="r")[...])


def collect_index(mask_dirs: Sequence[str | Path], out_path: str | Path | None = None) -> pd.DataFrame:
    """One table of every stored claim: index rows plus the ``masks`` folder holding each."""
    parts = [pd.read_parquet(Path(d) / "index.parquet").assign(masks=str(d)) for d in mask_dirs]
    index = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*INDEX_COLUMNS, "masks"])
    index = index.sort_values("cell_id", kind="stable").reset_index(drop=True)
    if out_path is not None:
        write_table(index, out_path)
    return index
