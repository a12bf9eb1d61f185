"""Tissue versus empty space (outside the brain, ventricles), on a low-resolution pyramid level.

The image is blurred at 25 µm, so cells and puncta melt into their
surroundings, then split in two by Otsu's threshold when the two classes are
clearly apart; a view with no empty space is all tissue.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from traice.core.geometry import Box

TISSUE_BLUR_UM = 25.0
TISSUE_SEPARATION = 4.0   # class means this many pooled sigmas apart, or the view is all tissue


TISSUE_MAX_VOXELS = 4_000_000  # the mask is made at the finest pyramid level of at most this many voxels


def tissue_mask(overview: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Boolean tissue mask of a coarse view of the image: ``(Z, Y, X)`` float, voxel size ``spacing`` µm -> bool, same shape.

    Non-finite voxels read as the view's median, as :func:`traice.core.intensity.normalise` reads them as background.
    """
    finite = np.isfinite(overview)
    if not finite.all():
        overview = np.where(finite, overview, np.median(overview[finite]) if finite.any() else 0.0)
    smooth = ndimage.gaussian_filter(overview, sigma=[TISSUE_BLUR_UM / s for s in spacing], mode="nearest")
    if smooth.max() - smooth.min() <= 1e-6 * max(abs(float(smooth.max())), 1.0):
        return np.ones(smooth.shape, bool)
    t = threshold_otsu(smooth)
    lo, hi = smooth[smooth <= t], smooth[smooth > t]
    pooled = np.sqrt(0.5 * (lo.var() + hi.var())) + 1e-9
    if (hi.mean() - lo.mean()) / pooled < TISSUE_SEPARATION:
        return np.ones(smooth.shape, bool)
    return smooth > t


def box_has_tissue(box: Box, mask: np.ndarray, mask_spacing, spacing) -> bool:
    """Whether a level-0 voxel box overlaps tissue in the coarse ``mask``."""
    lo_um, hi_um = box.to_um(spacing)
    coarse = Box.from_um(lo_um, hi_um, mask_spacing).intersect(Box.from_shape(mask.shape))
    return (not coarse.empty) and bool(mask[coarse.slices].any())


def tissue_core(mask: np.ndarray, spacing) -> np.ndarray:
    """The tissue at least :data:`TISSUE_BLUR_UM` inside the mask's edge (the faces of the view are not an edge):
    ``(Z, Y, X)`` bool of voxels ``spacing`` µm -> same shape; the mask itself where none is that deep.

    The mask is made from a view blurred over that distance, so its edge can lie that far out in the empty
    space; what must not take the space's voxels for tissue (the background statistics) reads the core."""
    if mask.all():  # no edge at all (the distance transform of a mask without empty space is not defined)
        return mask
    core = ndimage.distance_transform_edt(mask, sampling=spacing) > TISSUE_BLUR_UM
    return core if core.any() else mask


def tissue_in_box(box: Box, mask: np.ndarray, mask_spacing, spacing) -> np.ndarray:
    """Which level-0 voxels of ``box`` lie in tissue: the coarse ``mask`` read at each voxel's centre (nearest).

    ``box`` of voxels ``spacing`` µm, ``mask (Z', Y', X')`` bool of voxels ``mask_spacing`` µm
    ``-> (box.shape)`` bool."""
    index = [np.clip(((np.arange(a, b) + 0.5) * s / m).astype(np.int64), 0, n - 1)
             for a, b, s, m, n in zip(box.start, box.stop, spacing, mask_spacing, mask.shape)]
    return mask[np.ix_(*index)]
