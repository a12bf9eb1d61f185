"""Classical per-cell segmentation, the named baseline (the default until a network beats it; docs/stage2.md).

A local threshold (background + a fraction of the soma's contrast, at least k
noise sigmas of the smoothed window) and the connected component reaching the
soma, within the arbor radius; the claim decays with distance from the soma so
a touching neighbour's own voxels go to the neighbour.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage, special
from tqdm import tqdm

from traice.core.geometry import Box, distance_um, um_to_voxels
from traice.core.intensity import background_noise, normalise
from traice.core.masks import connected_to
from traice.io.claims import CellMask
from traice.stages.segment.params import SegmentParams


def load(params: SegmentParams, maps=None) -> None:
    """The classical method has no model (and reads no maps)."""
    return None


def segment_classical(crop: np.ndarray, soma: tuple[int, int, int], spacing, stats: dict, params: SegmentParams) -> tuple[np.ndarray, str]:
    """Claim (uint8, crop.shape) of the cell whose soma is at voxel ``soma`` of the raw crop."""
    sp = np.asarray(spacing, dtype=float)
    smooth = ndimage.gaussian_filter(normalise(crop, stats), sigma=params.smooth_um / sp)
    background = float(np.median(smooth))
    noise = background_noise(smooth, background) or 1e-6
    dist = distance_um(crop.shape, soma, sp)
    ball = dist <= 2.0
    soma_level = float(np.mean(smooth[ball]))
    if soma_level - background < params.min_snr * noise:
        return np.zeros(crop.shape, np.uint8), "soma not brighter than background"
    threshold = background + max(params.soma_fraction * (soma_level - background), params.min_snr * noise)
    mask = connected_to((smooth > threshold) & (dist <= params.radius_um), ball)
    if not mask.any():
        return np.zeros(crop.shape, np.uint8), "no foreground at the soma"
    sharpness = max(0.25 * (soma_level - threshold), 1e-6)
    confidence = special.expit((smooth - threshold) / sharpness)  # the logistic, without exp's overflow far below
    claim = confidence * np.exp(-dist / params.decay_um)
    return np.where(mask, np.clip(np.rint(1 + 254 * claim), 1, 255), 0).astype(np.uint8), "ok"


def segment_cell(image, cell, stats: dict, params: SegmentParams) -> CellMask:
    """Segment one cell (a row of cells.parquet) with the classical baseline, in its window cropped at the image border."""
    centre = (int(cell["z"]), int(cell["y"]), int(cell["x"]))
    box = Box.around(centre, um_to_voxels(params.radius_um, image.spacing)).intersect(image.bounds)
    soma = tuple(c - a for c, a in zip(centre, box.start))
    claim, status = segment_classical(image.read(box), soma, image.spacing, stats, params)
    return CellMask(int(cell["cell_id"]), box, claim, status)


def segment_cells(image, cells: pd.DataFrame, stats: dict, params: SegmentParams, model: None = None,
                  progress: bool = False) -> list[CellMask]:
    """Claims of ``cells`` (rows of cells.parquet), one cell at a time."""
    rows = tqdm(cells.iterrows(), total=len(cells), desc="segment", unit="cell", disable=not progress)
    return [segment_cell(image, row, stats, params) for _, row in rows]
