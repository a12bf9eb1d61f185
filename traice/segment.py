"""Per-cell segmentation in a window around each soma, stored as cropped claims.

Each cell's result is a *claim*: a uint8 crop where 0 = not this cell and
1..255 = this cell, with the value growing with the confidence that the voxel
belongs to this cell. ``stitch`` resolves voxels claimed by several cells by the
highest claim.

``classical`` is the named baseline: a local threshold (background + a fraction
of the soma's contrast, at least k noise sigmas) and the connected component
reaching the soma, within the arbor radius; the claim decays with distance from
the soma so a touching neighbour's own voxels go to the neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from scipy import ndimage
from tqdm import tqdm

from traice.detect import normalise
from traice.geometry import Box, um_to_voxels
from traice.io.ome import open_image
from traice.io.tables import atomic_dir, read_json, write_table
from traice.merge import cell_batch
from traice.region import cells_to_process

INDEX_COLUMNS = ["cell_id", "voxels", "status", "box_z0", "box_z1", "box_y0", "box_y1", "box_x0", "box_x1"]


@dataclass(frozen=True)
class SegmentParams:
    method: str = "classical"
    radius_um: float = 40.0          # window half-size and maximum arbor radius
    smooth_um: float = 0.4
    soma_fraction: float = 0.15      # threshold = background + this * (soma - background) ...
    min_snr: float = 2.5             # ... but at least this many noise sigmas of the smoothed image
    decay_um: float = 30.0           # claim halves every decay_um * ln 2 from the soma
    cells_per_job: int = 32


@dataclass
class CellMask:
    cell_id: int
    box: Box                 # level-0 voxels
    claim: np.ndarray        # uint8, box.shape
    status: str              # "ok" or why the mask is empty


def segment_classical(crop: np.ndarray, soma: tuple[int, int, int], spacing, stats: dict, params: SegmentParams) -> tuple[np.ndarray, str]:
    """Claim (uint8, crop.shape) of the cell whose soma is at voxel ``soma`` of the raw crop."""
    sp = np.asarray(spacing, dtype=float)
    smooth = ndimage.gaussian_filter(normalise(crop, stats), sigma=params.smooth_um / sp)
    background = float(np.median(smooth))
    noise = float(1.4826 * np.median(np.abs(smooth[smooth <= background] - background))) or 1e-6
    dist = _distance_um(crop.shape, soma, sp)
    ball = dist <= 2.0
    soma_level = float(np.mean(smooth[ball]))
    if soma_level - background < params.min_snr * noise:
        return np.zeros(crop.shape, np.uint8), "soma not brighter than background"
    threshold = background + max(params.soma_fraction * (soma_level - background), params.min_snr * noise)
    fg = (smooth > threshold) & (dist <= params.radius_um)
    comp, _ = ndimage.label(fg, structure=np.ones((3, 3, 3)))
    ids = np.unique(comp[ball & fg])
    ids = ids[ids > 0]
    if len(ids) == 0:
        return np.zeros(crop.shape, np.uint8), "no foreground at the soma"
    mask = np.isin(comp, ids)
    sharpness = max(0.25 * (soma_level - threshold), 1e-6)
    confidence = 1.0 / (1.0 + np.exp(-(smooth - threshold) / sharpness))
    claim = confidence * np.exp(-dist / params.decay_um)
    return np.where(mask, np.clip(np.rint(1 + 254 * claim), 1, 255), 0).astype(np.uint8), "ok"


def _distance_um(shape, centre, spacing) -> np.ndarray:
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, centre, spacing)], indexing="ij", sparse=True)
    return np.sqrt(sum(g**2 for g in grids))


def segment_cell(image, cell, stats: dict, params: SegmentParams) -> CellMask:
    """Segment one cell (a row of cells.parquet) in its window, cropped at the image border."""
    if params.method != "classical":
        raise ValueError(f"unknown segment method {params.method!r}")
    centre = (int(cell["z"]), int(cell["y"]), int(cell["x"]))
    box = Box.around(centre, um_to_voxels(params.radius_um, image.spacing)).intersect(image.bounds)
    soma = tuple(c - a for c, a in zip(centre, box.start))
    claim, status = segment_classical(image.read(box), soma, image.spacing, stats, params)
    return CellMask(int(cell["cell_id"]), box, claim, status)


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


def segment_batch(plan_dir: str | Path, cells_path: str | Path, batch: int, out_path: str | Path, params: SegmentParams) -> pd.DataFrame:
    """Segment every cell of one batch of the cells to process and store their claims at ``out_path``."""
    plan = read_json(Path(plan_dir) / "plan.json")
    image = open_image(plan["image"], plan["channel"])
    cells = cell_batch(cells_to_process(pd.read_parquet(cells_path), plan), batch, params.cells_per_job)
    rows = tqdm(cells.iterrows(), total=len(cells), desc=f"segment batch {batch}", unit="cell")
    masks = [segment_cell(image, row, plan["stats"], params) for _, row in rows]
    return write_masks(masks, out_path)
