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
    # per-soma sums over the foreground voxels only (the watershed labels nothing outside ``fg``)
    where = np.nonzero(regions)
    label = regions[where]
    n = len(peaks) + 1
    volume = np.bincount(label, minlength=n)[1:] * float(np.prod(spacing))
    w = weights[where].astype(np.float32, copy=False)
    mass = np.bincount(label, w, minlength=n)[1:]
    centroid = np.stack([np.bincount(label, w * c.astype(np.float32), minlength=n)[1:] for c in where], axis=1)
    centroid /= np.maximum(mass, 1e-9)[:, None]
    best = np.full(n, -np.inf)
    np.maximum.at(best, label, score[where])
    best = best[1:].astype(score.dtype)
    radius = np.cbrt(3 * volume / (4 * np.pi))
    keep = (radius >= 0.5 * r_min) & (radius <= 1.6 * r_max)
    return pd.DataFrame(
        {"z": centroid[keep, 0], "y": centroid[keep, 1], "x": centroid[keep, 2],
         "score": best[keep], "volume_um3": volume[keep]}
    )
