"""Classical soma detection, the named baseline.

Background-noise normalisation (shared statistics from the plan), Gaussian
smoothing, a grey opening that erases structures thinner than a soma
(processes, small puncta), local background subtraction, a threshold in noise
units, marker watershed on the smoothed contrast to split touching somas, and
a size filter on the equivalent radius (:func:`traice.stages.detect.somas.split_somas`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from traice.core.intensity import normalise
from traice.stages.detect.params import DetectParams
from traice.stages.detect.somas import split_somas


def load(params: DetectParams) -> None:
    """The classical method has no model."""
    return None


def smooth_background(volume: np.ndarray, sigma_voxels) -> np.ndarray:
    """Gaussian background of a large ``sigma_voxels``, computed on a subsampled grid.

    A background that smooth carries nothing finer than sigma / 2, so it is
    filtered at that step and interpolated back: same result, a fraction of the work.
    """
    step = [max(1, int(s // 2)) for s in sigma_voxels]
    small = ndimage.gaussian_filter(volume[tuple(slice(None, None, k) for k in step)], [s / k for s, k in zip(sigma_voxels, step)], mode="nearest")
    zoom = [n / m for n, m in zip(volume.shape, small.shape)]
    return ndimage.zoom(small, zoom, order=1, mode="nearest", grid_mode=True)[tuple(slice(0, n) for n in volume.shape)]


def detect_classical(block: np.ndarray, spacing, stats: dict, params: DetectParams = DetectParams(), model: None = None) -> pd.DataFrame:
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
