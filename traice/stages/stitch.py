"""Stitch per-cell claims into one multiscale label image, block by block.

Each stitch job owns a disjoint block of whole label chunks (at every pyramid
level), so parallel jobs never write the same chunk. Inside a block every voxel
goes to the cell with the highest claim; ties go to the lowest ``cell_id``.
The result is the same whatever the block size or job order. A region update
recomposes only the affected boxes and never touches the voxels of kept cells.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import zarr

from traice.core.geometry import Box
from traice.io.multiscale import create_multiscale, write_block
from traice.io.claims import collect_index, read_claim, write_masks

LABEL_DTYPE = np.uint32


def init_labels(path: str | Path, shape: Sequence[int], spacing: Sequence[float], chunk: Sequence[int],
                image: str | Path | None = None) -> None:
    """Create the empty label image (all levels, NGFF image-label metadata linking back to ``image``)."""
    create_multiscale(path, shape, spacing, LABEL_DTYPE, chunk, label=True, name="segmentation", source=image)


def compose(block: Box, index: pd.DataFrame) -> np.ndarray:
    """Labels (block.shape, uint32) of one block from the claims that overlap it."""
    labels = np.zeros(block.shape, LABEL_DTYPE)
    best = np.zeros(block.shape, np.uint8)
    for _, row in index[index["voxels"] > 0].sort_values("cell_id").iterrows():
        box = Box.from_row(row, "box")
        overlap = box.intersect(block)
        if overlap.empty:
            continue
        claim = read_claim(row["masks"], int(row["cell_id"]))[overlap.relative_to(box).slices]
        target = overlap.relative_to(block).slices
        wins = claim > best[target]  # strict: on ties the lower cell_id (seen first) keeps the voxel
        best[target][wins] = claim[wins]
        labels[target][wins] = int(row["cell_id"])
    return labels


def compose_masks(masks: Sequence, shape: Sequence[int]) -> np.ndarray:
    """Labels ``(shape)`` uint32 of a whole small image from claims held in memory (``CellMask``), composed as
    the workflow composes them (benchmarks and tests)."""
    with tempfile.TemporaryDirectory() as tmp:
        write_masks(list(masks), Path(tmp) / "masks.zarr")
        return compose(Box.from_shape(shape), collect_index([Path(tmp) / "masks.zarr"]))


def stitch_block(label_path: str | Path, block: Box, index: pd.DataFrame,
                 affected: Sequence[Box] | None = None, keep_ids: Sequence[int] = ()) -> int:
    """Compose one block and write it into every level; returns the labelled voxel count.

    Only voxels inside ``affected`` (default: everywhere) that do not belong to a
    cell of ``keep_ids`` are composed again; the others keep their current label.
    That is how a region update patches a previous label image, and why a killed
    stitch redone writes the same block.
    """
    current = np.asarray(zarr.open_array(str(Path(label_path) / "0"), mode="r")[block.slices])
    free = np.zeros(block.shape, bool)
    for box in affected if affected is not None else [block]:
        overlap = box.intersect(block)
        if not overlap.empty:
            free[overlap.relative_to(block).slices] = True
    if len(keep_ids):
        free &= ~np.isin(current, np.asarray(keep_ids, dtype=LABEL_DTYPE))
    labels = np.where(free, compose(block, index), current)
    write_block(label_path, block, labels, label=True)
    return int(np.count_nonzero(labels))
