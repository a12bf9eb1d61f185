"""Binary masks around a soma: structuring elements and the part of a mask connected to the soma.

Every method that turns a foreground into one cell keeps the same thing: the
26-connected components of the foreground that reach the soma.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

FULL_CONNECTIVITY = np.ones((3, 3, 3), bool)
"""26-neighbourhood: voxels touching by a face, an edge or a corner are connected."""


def ellipsoid_footprint(radius_um: float, spacing: Sequence[float]) -> np.ndarray:
    """Boolean ellipsoid structuring element of a physical radius on anisotropic voxels: ``(2hz+1, 2hy+1, 2hx+1)``."""
    half = [max(0, int(radius_um / s)) for s in spacing]
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing)], indexing="ij")
    return sum(g**2 for g in grids) <= radius_um**2


def connected_to(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The components of ``mask`` (26-connected) that overlap ``seed``; both (Z, Y, X) bool, same shape.

    All False when no component touches the seed.
    """
    comp, _ = ndimage.label(mask, structure=FULL_CONNECTIVITY)
    ids = np.unique(comp[seed & mask])
    ids = ids[ids > 0]
    return np.isin(comp, ids)


def soma_component(mask: np.ndarray, soma: Sequence[float]) -> np.ndarray:
    """The part of ``mask`` 26-connected to the soma voxel (or, off the mask, to the mask voxel nearest it).

    ``mask`` (Z, Y, X) bool, ``soma`` a voxel position (may be fractional) -> (Z, Y, X) bool.
    """
    if not mask.any():
        return mask.copy()
    v = tuple(np.clip(np.rint(soma).astype(int), 0, np.asarray(mask.shape) - 1))
    if not mask[v]:
        _, idx = ndimage.distance_transform_edt(~mask, return_indices=True)
        v = tuple(i[v] for i in idx)
    seed = np.zeros(mask.shape, bool)
    seed[v] = True
    return connected_to(mask, seed)
