"""Rasterise traced trees (SWC-like node lists) and ellipsoids into voxel boxes.

A tree is given as node positions ``points_um`` (N, 3) in µm (z, y, x, image
frame), radii ``radii_um`` (N,) and ``parents`` (N,) with -1 for the root. Each
edge is a tapered tube: the radius is interpolated linearly between its two
nodes. Works on anisotropic voxels (``spacing`` in µm per axis).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from traice.core.geometry import Box


def tree_bounds(points_um: np.ndarray, radii_um: np.ndarray, spacing: Sequence[float]) -> Box:
    """Voxel box enclosing every tube of the tree."""
    lo = (points_um - radii_um[:, None]).min(axis=0)
    hi = (points_um + radii_um[:, None]).max(axis=0)
    sp = np.asarray(spacing)
    return Box(tuple(np.floor(lo / sp).astype(int) - 1), tuple(np.ceil(hi / sp).astype(int) + 2))


def sample_edges(points_um: np.ndarray, radii_um: np.ndarray, parents: np.ndarray, step_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step_um`` along every edge (and the nodes): positions (M, 3), radii (M,)."""
    child = np.flatnonzero(parents >= 0)
    par = parents[child]
    a, b = points_um[par], points_um[child]
    ra, rb = radii_um[par], radii_um[child]
    n = np.maximum(1, np.ceil(np.linalg.norm(b - a, axis=1) / step_um).astype(int))
    edge = np.repeat(np.arange(len(child)), n + 1)
    t = np.concatenate([np.linspace(0.0, 1.0, k + 1) for k in n]) if len(n) else np.zeros(0)
    pos = a[edge] + (b[edge] - a[edge]) * t[:, None]
    rad = ra[edge] + (rb[edge] - ra[edge]) * t
    return np.concatenate([pos, points_um]), np.concatenate([rad, radii_um])


def tube_mask(
    points_um: np.ndarray,
    radii_um: np.ndarray,
    parents: np.ndarray,
    box: Box,
    spacing: Sequence[float],
) -> np.ndarray:
    """Boolean mask (box.shape) of the union of the tree's tapered tubes.

    Every voxel whose centre lies within the local radius of the nearest centre-line
    sample is set; centre-line voxels are always set, so thin processes stay
    connected even below the voxel size.
    """
    sp = np.asarray(spacing, dtype=float)
    pos, rad = sample_edges(points_um, radii_um, parents, step_um=float(sp.min()) / 2)
    vox = np.rint(pos / sp).astype(int) - np.asarray(box.start)
    inside = np.all((vox >= 0) & (vox < np.asarray(box.shape)), axis=1)
    vox, rad = vox[inside], rad[inside]
    seed_radius = np.zeros(box.shape, dtype=np.float32)
    if len(vox) == 0:
        return np.zeros(box.shape, dtype=bool)
    np.maximum.at(seed_radius, tuple(vox.T), rad.astype(np.float32))
    dist, idx = ndimage.distance_transform_edt(seed_radius == 0, sampling=sp, return_indices=True)
    return dist <= seed_radius[tuple(idx)]


def ellipsoid_mask(
    centre_um: Sequence[float],
    radii_um: Sequence[float],
    rotation: np.ndarray,
    box: Box,
    spacing: Sequence[float],
) -> np.ndarray:
    """Boolean mask (box.shape) of a rotated ellipsoid; ``rotation`` maps body to image axes."""
    grids = [
        (np.arange(a, b) * s - c)
        for a, b, s, c in zip(box.start, box.stop, spacing, centre_um)
    ]
    zz, yy, xx = np.meshgrid(*grids, indexing="ij")
    p = np.stack([zz, yy, xx], axis=-1) @ np.asarray(rotation)  # image -> body coordinates
    return np.sum((p / np.asarray(radii_um)) ** 2, axis=-1) <= 1.0


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q
