"""Tissue versus empty space (outside the brain, ventricles), on a low-resolution pyramid level.

The image is blurred at 25 µm, so cells and puncta melt into their
surroundings, then split in two by Otsu's threshold when the two classes are
clearly apart; a view with no empty space is all tissue.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from traice.geometry import Box
from traice.io.ome import OmeImage, read_overview

TISSUE_BLUR_UM = 25.0
TISSUE_SEPARATION = 4.0   # class means this many pooled sigmas apart, or the view is all tissue


def tissue_mask(image: OmeImage, max_voxels: int = 4_000_000) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Boolean tissue mask at a coarse resolution (at most ``max_voxels``) and its voxel size (µm)."""
    data, spacing = read_overview(image, max_voxels)
    smooth = ndimage.gaussian_filter(data, sigma=[TISSUE_BLUR_UM / s for s in spacing], mode="nearest")
    if smooth.max() - smooth.min() <= 1e-6 * max(abs(float(smooth.max())), 1.0):
        return np.ones(smooth.shape, bool), spacing
    t = threshold_otsu(smooth)
    lo, hi = smooth[smooth <= t], smooth[smooth > t]
    pooled = np.sqrt(0.5 * (lo.var() + hi.var())) + 1e-9
    if (hi.mean() - lo.mean()) / pooled < TISSUE_SEPARATION:
        return np.ones(smooth.shape, bool), spacing
    return smooth > t, spacing


def box_has_tissue(box: Box, mask: np.ndarray, mask_spacing, spacing) -> bool:
    """Whether a level-0 voxel box overlaps tissue in the coarse ``mask``."""
    lo_um, hi_um = box.to_um(spacing)
    coarse = Box.from_um(lo_um, hi_um, mask_spacing).intersect(Box.from_shape(mask.shape))
    return (not coarse.empty) and bool(mask[coarse.slices].any())
