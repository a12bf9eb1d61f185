"""Somas from a foreground mask: one per blob maximum, split by watershed, weighted centroids, size filter.

Both detection methods end here, so their tables agree column for column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from traice.core.masks import ellipsoid_footprint

COLUMNS = ["z", "y", "x", "score", "volume_um3", "tile"]
"""Columns of a detection table (``tile`` is added per tile by :func:`traice.stages.detect.detect_tile`'s caller)."""


def split_somas(fg: np.ndarray, blob: np.ndarray, weights: np.ndarray, score: np.ndarray, spacing,
                soma_radius_um: tuple[float, float]) -> pd.DataFrame:
    """Somas of a foreground mask: one marker per maximum of ``blob`` (at most one per soma-sized
    neighbourhood), watershed of ``-blob`` inside ``fg``, ``weights``-weighted centroids, the maximum of
    ``score`` per soma, and a size filter on the equivalent radius. All inputs (Z, Y, X).

    Each connected part of ``fg`` (face neighbours) is split within its own bounding box: neither the maxima
    nor the watershed reach from one part into another, so this is the whole block's result (the same rows, in
    the order of the parts' labels), without the whole-block copies a watershed makes.
    """
    spacing = np.asarray(spacing, dtype=float)
    if not fg.any():
        return pd.DataFrame(columns=COLUMNS[:-1])
    parts, _ = ndimage.label(fg)
    footprint = ellipsoid_footprint(1.3 * soma_radius_um[0], spacing)
    floor = blob.min()  # maxima must rise above the block's lowest value, not their box's
    somas = [_split_part(parts[box] == label, box, blob[box], weights[box], score[box], footprint, floor)
             for label, box in enumerate(ndimage.find_objects(parts), start=1)]
    centroid, best, count = (np.concatenate(column) for column in zip(*somas))
    volume = count * float(np.prod(spacing))
    radius = np.cbrt(3 * volume / (4 * np.pi))
    keep = (radius >= 0.5 * soma_radius_um[0]) & (radius <= 1.6 * soma_radius_um[1])
    return pd.DataFrame(
        {"z": centroid[keep, 0], "y": centroid[keep, 1], "x": centroid[keep, 2],
         "score": best[keep].astype(score.dtype), "volume_um3": volume[keep]}
    )


CANDIDATE_CHUNK = 256
"""Candidates whose footprints :func:`footprint_maxima` reads at once (with the grid's 1243-voxel soma footprint,
7 x 19 x 19: 8 MB of indices)."""


def footprint_maxima(blob: np.ndarray, mask: np.ndarray, footprint: np.ndarray, floor: float) -> np.ndarray:
    """``skimage.feature.peak_local_max(blob, footprint=footprint, labels=mask, exclude_border=False,
    threshold_abs=floor)`` for a ``mask`` that touches every face of its array, as a part cropped to its bounding
    box does (the same peaks ``(n, 3)``, highest first, ties in raster order), without a maximum filter of the
    whole footprint over every voxel.

    A voxel equals the maximum over its footprint only if it equals the maximum over the footprint's central
    3 x 3 x 3 part; the footprint is read around those candidates alone (outside ``mask`` the image counts as
    the lowest float, beyond the faces as the nearest voxel, as skimage's masked maximum filter has it). Where
    every voxel of the mask is such a candidate (a flat mask), skimage decides, with its rule for flat images.
    """
    low = np.finfo(blob.dtype).min if np.issubdtype(blob.dtype, np.floating) else np.iinfo(blob.dtype).min
    image = np.where(mask, blob, low)
    centre = np.asarray(footprint.shape) // 2
    near = footprint[tuple(slice(max(c - 1, 0), c + 2) for c in centre)]
    candidates = mask & (image == ndimage.maximum_filter(image, footprint=near, mode="nearest"))
    if candidates.sum() == mask.sum():
        return peak_local_max(blob, footprint=footprint, labels=mask.view(np.uint8), exclude_border=False,
                              threshold_abs=floor)
    points = np.argwhere(candidates)  # raster order
    offsets = np.argwhere(footprint) - centre
    last = np.asarray(image.shape) - 1
    highest = np.empty(len(points), image.dtype)
    for start in range(0, len(points), CANDIDATE_CHUNK):
        around = np.clip(points[start:start + CANDIDATE_CHUNK, None, :] + offsets, 0, last)
        highest[start:start + CANDIDATE_CHUNK] = image[around[..., 0], around[..., 1], around[..., 2]].max(axis=1)
    value = image[tuple(points.T)]
    keep = (value == highest) & (value > floor)
    peaks, value = points[keep], value[keep]
    return peaks[np.argsort(-value, kind="stable")]


def _split_part(mask: np.ndarray, box: tuple[slice, ...], blob: np.ndarray, weights: np.ndarray, score: np.ndarray,
                footprint: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The somas of one connected part of the foreground, ``mask`` its bounding box ``box`` of the block (the
    other arrays cropped to it), at the maxima of ``blob`` above ``floor``: (centroids ``(n, 3)`` in the block's
    voxels, the maximum score and the voxel count of each; n may be 0)."""
    peaks = footprint_maxima(blob, mask, footprint, floor)
    if not len(peaks):
        return np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.int64)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = watershed(-blob, markers, mask=mask)
    # per-soma sums over the part's voxels only (the watershed labels nothing outside it)
    where = np.nonzero(regions)
    label = regions[where]
    n = len(peaks) + 1
    count = np.bincount(label, minlength=n)[1:]
    w = weights[where].astype(np.float32, copy=False)
    mass = np.bincount(label, w, minlength=n)[1:]
    centroid = np.stack([np.bincount(label, w * (c + s.start).astype(np.float32), minlength=n)[1:]
                         for c, s in zip(where, box)], axis=1)
    centroid /= np.maximum(mass, 1e-9)[:, None]
    best = np.full(n, -np.inf)
    np.maximum.at(best, label, score[where])
    return centroid, best[1:], count
