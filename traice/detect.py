"""Soma detection per tile, with the owner rule.

``traice`` (default) is stage 1 of trAIce3D: the transformer U-Net's soma
probability over the tile's read box in Gaussian-blended sliding windows
(:func:`traice.infer.sliding_window_probabilities`, input normalised with the
plan's statistics of the whole image, so tiles have no seams), thresholded;
touching somas are split by a marker watershed on the smoothed probability,
and each soma's centroid is probability-weighted.

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
    method: str = "traice"         # traice (stage-1 model) | classical (baseline)
    soma_radius_um: tuple[float, float] = (3.0, 6.0)
    # classical
    smooth_um: float = 1.0
    opening_um: float = 4.0        # box width of the grey opening (erases thinner structures)
    background_um: float = 20.0    # Gaussian sigma of the local background
    threshold: float = 3.0         # in units of the image's background noise sigma
    # traice
    model: str | None = None       # weights file; None = the shipped stage-1 S weights
    probability: float = 0.5       # soma probability threshold
    overlap: float = 0.25          # sliding-window overlap
    batch_size: int = 2            # windows per forward pass
    device: str = "auto"           # auto (cuda when present) | cpu | cuda


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
    blob = ndimage.gaussian_filter(contrast, sigma=(params.soma_radius_um[0] / 2) / spacing)
    return split_somas(fg, blob, np.clip(contrast, 0, None), contrast, spacing, params.soma_radius_um)


def split_somas(fg: np.ndarray, blob: np.ndarray, weights: np.ndarray, score: np.ndarray, spacing,
                soma_radius_um: tuple[float, float]) -> pd.DataFrame:
    """Somas of a foreground mask: one marker per maximum of ``blob`` (at most one per soma-sized
    neighbourhood), watershed of ``-blob`` inside ``fg``, ``weights``-weighted centroids, the maximum of
    ``score`` per soma, and a size filter on the equivalent radius. All inputs (Z, Y, X).
    """
    spacing = np.asarray(spacing, dtype=float)
    if not fg.any():
        return pd.DataFrame(columns=COLUMNS[:-1])
    r_min, r_max = soma_radius_um
    comp, _ = ndimage.label(fg)
    peaks = peak_local_max(
        blob, footprint=ellipsoid_footprint(1.3 * r_min, spacing), labels=comp, exclude_border=False,
    )
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = watershed(-blob, markers, mask=fg)
    idx = np.arange(1, len(peaks) + 1)
    voxels = ndimage.sum_labels(np.ones_like(regions, dtype=np.float32), regions, idx)
    volume = voxels * float(np.prod(spacing))
    mass = ndimage.sum_labels(weights, regions, idx)
    coords = np.indices(fg.shape, dtype=np.float32)
    centroid = np.stack([ndimage.sum_labels(weights * c, regions, idx) for c in coords], axis=1) / np.maximum(mass, 1e-9)[:, None]
    best = ndimage.maximum(score, regions, idx)
    radius = np.cbrt(3 * volume / (4 * np.pi))
    keep = (radius >= 0.5 * r_min) & (radius <= 1.6 * r_max)
    return pd.DataFrame(
        {"z": centroid[keep, 0], "y": centroid[keep, 1], "x": centroid[keep, 2],
         "score": np.asarray(best)[keep], "volume_um3": volume[keep]}
    )


def detect_traice(block: np.ndarray, spacing, stats: dict, params: DetectParams, model) -> pd.DataFrame:
    """Somas in one raw (z, y, x) block from the stage-1 model; columns as :func:`detect_classical`,
    ``score`` = the soma's peak probability."""
    from traice.infer import model_input, sliding_window_probabilities

    spacing = np.asarray(spacing, dtype=float)
    prob = sliding_window_probabilities(model, model_input(block, stats), model.window, params.overlap,
                                        params.batch_size, params.device)
    blob = ndimage.gaussian_filter(prob, sigma=(params.soma_radius_um[0] / 2) / spacing)
    return split_somas(prob > params.probability, blob, prob, prob, spacing, params.soma_radius_um)


def load_detector(params: DetectParams):
    """The stage-1 model of ``params`` (None for the classical method)."""
    if params.method == "classical":
        return None
    if params.method != "traice":
        raise ValueError(f"unknown detect method {params.method!r}")
    from traice.infer import load_model
    from traice.weights import shipped_weights

    return load_model(params.model or shipped_weights("soma"))


def detect_tile(image, core: Box, read: Box, stats: dict, params: DetectParams, model=None) -> pd.DataFrame:
    """Detections of one tile in level-0 voxels, keeping only those its core owns.

    ``model`` is :func:`load_detector`'s (loaded once per batch of tiles).
    """
    if params.method == "classical":
        found = detect_classical(image.read(read), image.spacing, stats, params)
    elif params.method == "traice":
        found = detect_traice(image.read(read), image.spacing, stats, params, model)
    else:
        raise ValueError(f"unknown detect method {params.method!r}")
    if found.empty:
        return found
    found[["z", "y", "x"]] += np.asarray(read.start, dtype=float)
    return found[core.contains_points(found[["z", "y", "x"]].to_numpy())].reset_index(drop=True)


def detect_batch(plan_dir: str | Path, batch: int, out_path: str | Path, params: DetectParams) -> pd.DataFrame:
    """Detect somas in every tile of one tile batch; write one table (level-0 voxels)."""
    plan = read_json(Path(plan_dir) / "plan.json")
    tiles = pd.read_parquet(Path(plan_dir) / "tiles.parquet")
    image = open_image(plan["image"], plan["channel"])
    model = load_detector(params)
    parts = []
    for tile, core, read in tqdm(tiles_of_batch(tiles, batch), desc=f"detect batch {batch}", unit="tile"):
        found = detect_tile(image, core, read, plan["stats"], params, model)
        parts.append(found.assign(tile=tile))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    table = table.reindex(columns=COLUMNS).astype({"tile": "int64"})
    write_table(table, out_path)
    return table
