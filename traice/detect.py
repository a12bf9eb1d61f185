"""Soma detection per tile, with the owner rule.

``classical`` is the named baseline: background-noise normalisation (shared
statistics from the plan), Gaussian smoothing, a grey opening that erases
structures thinner than a soma (processes, small puncta), local background
subtraction, a threshold in noise units, marker watershed on the distance
transform to split touching somas, and a size filter on the equivalent radius.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed
from tqdm import tqdm

from traice.geometry import Box
from traice.io.ome import open_image
from traice.io.tables import read_json, write_table
from traice.plan import tiles_of_batch

COLUMNS = ["z", "y", "x", "score", "volume_um3", "tile"]


@dataclass(frozen=True)
class DetectParams:
    method: str = "classical"
    soma_radius_um: tuple[float, float] = (3.0, 6.0)
    smooth_um: float = 1.0
    opening_um: float = 4.0        # box width of the grey opening (erases thinner structures)
    background_um: float = 20.0    # Gaussian sigma of the local background
    threshold: float = 3.0         # in units of the image's background noise sigma


def ellipsoid_footprint(radius_um: float, spacing) -> np.ndarray:
    """Boolean ellipsoid structuring element of a physical radius on anisotropic voxels."""
    half = [max(0, int(radius_um / s)) for s in spacing]
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing)], indexing="ij")
    return sum(g**2 for g in grids) <= radius_um**2


def smooth_background(volume: np.ndarray, sigma_voxels) -> np.ndarray:
    """Gaussian background of a large ``sigma_voxels``, computed on a subsampled grid.

    A background that smooth carries nothing finer than sigma / 2, so it is
    filtered at that step and interpolated back: same result, a fraction of the work.
    """
    step = [max(1, int(s // 2)) for s in sigma_voxels]
    small = ndimage.gaussian_filter(volume[tuple(slice(None, None, k) for k in step)], [s / k for s, k in zip(sigma_voxels, step)], mode="nearest")
    zoom = [n / m for n, m in zip(volume.shape, small.shape)]
    return ndimage.zoom(small, zoom, order=1, mode="nearest", grid_mode=True)[tuple(slice(0, n) for n in volume.shape)]


def normalise(block: np.ndarray, stats: dict) -> np.ndarray:
    """Raw counts to background-noise units: 0 = background level, 1 = one noise sigma."""
    return (block - np.float32(stats["median"])) / np.float32(stats["sigma"])


def detect_classical(block: np.ndarray, spacing, stats: dict, params: DetectParams = DetectParams()) -> pd.DataFrame:
    """Somas in one raw (z, y, x) block: centroids in block voxels, score, volume.

    Returns a table with columns z, y, x (float voxel), score (peak contrast in
    noise units), volume_um3 (of the detected soma region).
    """
    spacing = np.asarray(spacing, dtype=float)
    n = normalise(block.astype(np.float32), stats)
    smooth = ndimage.gaussian_filter(n, sigma=params.smooth_um / spacing)
    size = [max(1, int(round(params.opening_um / s))) for s in spacing]
    opened = ndimage.grey_opening(smooth, size=size)
    background = smooth_background(opened, params.background_um / spacing)
    contrast = opened - background
    fg = contrast > params.threshold
    if not fg.any():
        return pd.DataFrame(columns=COLUMNS[:-1])
    r_min, r_max = params.soma_radius_um
    comp, _ = ndimage.label(fg)
    # one marker per blob: maxima of the opened image smoothed at soma scale
    blob = ndimage.gaussian_filter(contrast, sigma=(r_min / 2) / spacing)
    peaks = peak_local_max(
        blob, footprint=ellipsoid_footprint(1.3 * r_min, spacing), labels=comp, exclude_border=False,
    )
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = watershed(-blob, markers, mask=fg)
    idx = np.arange(1, len(peaks) + 1)
    weights = np.clip(contrast, 0, None)
    voxels = ndimage.sum_labels(np.ones_like(regions, dtype=np.float32), regions, idx)
    volume = voxels * float(np.prod(spacing))
    mass = ndimage.sum_labels(weights, regions, idx)
    coords = np.indices(fg.shape, dtype=np.float32)
    centroid = np.stack([ndimage.sum_labels(weights * c, regions, idx) for c in coords], axis=1) / np.maximum(mass, 1e-9)[:, None]
    score = ndimage.maximum(contrast, regions, idx)
    radius = np.cbrt(3 * volume / (4 * np.pi))
    keep = (radius >= 0.5 * r_min) & (radius <= 1.6 * r_max)
    return pd.DataFrame(
        {"z": centroid[keep, 0], "y": centroid[keep, 1], "x": centroid[keep, 2],
         "score": np.asarray(score)[keep], "volume_um3": volume[keep]}
    )


def detect_tile(image, core: Box, read: Box, stats: dict, params: DetectParams) -> pd.DataFrame:
    """Detections of one tile in level-0 voxels, keeping only those its core owns."""
    if params.method != "classical":
        raise ValueError(f"unknown detect method {params.method!r}")
    found = detect_classical(image.read(read), image.spacing, stats, params)
    if found.empty:
        return found
    found[["z", "y", "x"]] += np.asarray(read.start, dtype=float)
    return found[core.contains_points(found[["z", "y", "x"]].to_numpy())].reset_index(drop=True)


def detect_batch(plan_dir: str | Path, batch: int, out_path: str | Path, params: DetectParams) -> pd.DataFrame:
    """Detect somas in every tile of one tile batch; write one table (level-0 voxels)."""
    plan = read_json(Path(plan_dir) / "plan.json")
    tiles = pd.read_parquet(Path(plan_dir) / "tiles.parquet")
    image = open_image(plan["image"], plan["channel"])
    parts = []
    for tile, core, read in tqdm(tiles_of_batch(tiles, batch), desc=f"detect batch {batch}", unit="tile"):
        found = detect_tile(image, core, read, plan["stats"], params)
        parts.append(found.assign(tile=tile))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    table = table.reindex(columns=COLUMNS).astype({"tile": "int64"})
    write_table(table, out_path)
    return table
