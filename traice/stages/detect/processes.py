"""Processes leaving a soma: what tells a microglia soma from a process-free blob of the same size and brightness.

A microglia soma has processes leaving it; a perivascular macrophage or a
lipofuscin clump has none, and the one-pass network's soma channel calls some
of them somas with the same confidence (docs/arbors.md, "Processes leaving a
soma"). Its foreground channel tells them apart: around a true soma some of the
voxels just outside it are foreground (the processes' first microns), around a
blob almost none are. The evidence of one detection is the share of the voxels
2-8 µm outside its soma (the connected part of the soma probability above the
detection threshold that holds its centroid) whose foreground probability is
above the growth step's 0.1. ``detect.min_processes`` drops detections with
less (0 keeps every one: amoeboid microglia, which have retracted their
processes, are then counted too).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from traice.core.geometry import Box, um_to_voxels
from traice.stages.segment.params import METHOD_PROBABILITY

SHELL_UM = (2.0, 8.0)
"""The shell around a soma whose foreground is read: from this far outside it to this far."""
FOREGROUND = METHOD_PROBABILITY["growth"]
"""A voxel of the shell counts as process above this foreground probability (``segment.probability``'s default)."""


def process_share(soma: np.ndarray, foreground: np.ndarray, points: np.ndarray, spacing,
                  probability: float) -> np.ndarray:
    """The process evidence ``(n,)`` of each detection: the share of the voxels ``SHELL_UM`` outside its soma whose
    ``foreground`` probability is above ``FOREGROUND``; NaN for a detection whose centroid lies outside every soma
    (a bent soma) or whose shell lies outside the block.

    ``soma``, ``foreground``: probabilities (Z, Y, X) on voxels of ``spacing`` µm; ``points`` ``(n, 3)``: the
    detections' centroids in the block's voxels; ``probability``: the soma threshold (``detect.probability``).
    Somas touching each other share one connected part, and so one shell.
    """
    spacing = np.asarray(spacing, dtype=float)
    share = np.full(len(points), np.nan)
    if not len(points):
        return share
    parts, _ = ndimage.label(soma > probability)
    voxel = np.clip(np.rint(points).astype(int), 0, np.asarray(soma.shape) - 1)
    labels = parts[tuple(voxel.T)]
    boxes = ndimage.find_objects(parts)
    reach = tuple(n + 1 for n in um_to_voxels(SHELL_UM[1], spacing))  # the whole shell, a voxel to spare
    bounds = Box.from_shape(soma.shape)
    for label in np.unique(labels[labels > 0]):
        part = boxes[label - 1]
        box = Box.from_slices(part).grow(reach).intersect(bounds).slices
        outside = ndimage.distance_transform_edt(parts[box] != label, sampling=spacing)
        shell = (outside > SHELL_UM[0]) & (outside <= SHELL_UM[1])
        if shell.any():
            share[labels == label] = float((foreground[box][shell] > FOREGROUND).mean())
    return share
