"""The one-pass maps: what the network says about every voxel, and how it is stored.

The one-pass network (``detect.method: traice`` with a 5-channel model) gives,
per voxel of the image::

    channel 0  soma probability
    channel 1  foreground probability (soma + processes of any cell)
    channel 2-4 offset (z, y, x) from the voxel to its own cell's soma, in
               units of OFFSET_SCALE_UM (µm / OFFSET_SCALE_UM)

Offsets are absolute distances in a fixed unit rather than normalised per cell
(as HoVer-Net/CellViT do for boundaries) because ownership votes with them: a
voxel plus its offset is where its soma should be.

Stored maps keep a whole brain in proportion (:func:`encode`): probabilities
as uint8 (``round(255 p)``), offsets as int8 (``round(OFFSET_STEP⁻¹ · offset)``,
clipped) set to 0 where the stored foreground is 0, so that the background
compresses away; ``docs/arbors.md`` records the
bytes per input voxel.
"""

from __future__ import annotations

import numpy as np

OFFSET_SCALE_UM = 40.0
"""One offset unit in µm (about a microglial arbor's radius)."""
CHANNELS = ("soma", "foreground", "offset_z", "offset_y", "offset_x")
PROBABILITY_CHANNELS = 2
"""The first channels are probabilities (sigmoid of the network's logits); the rest are offsets."""
OFFSET_STEP = 1.0 / 64
"""Offsets are stored as int8 multiples of this (0.625 µm at OFFSET_SCALE_UM = 40; range ±79 µm)."""


def offsets_to_soma(labels: np.ndarray, centres: np.ndarray, spacing, origin=(0, 0, 0)) -> np.ndarray:
    """Target offsets ``(3, Z, Y, X)`` float32: from each labelled voxel to its cell's soma, in offset units; 0 elsewhere.

    ``labels (Z, Y, X)``: 0 = background, i = cell i; ``centres (N, 3)``: soma of
    cell i in row i - 1, voxels in the same frame as ``labels`` shifted by ``origin``.
    """
    out = np.zeros((3, *labels.shape), np.float32)
    inside = labels > 0
    if not inside.any() or not len(centres):
        return out
    idx = np.nonzero(inside)
    own = np.asarray(centres, np.float64)[labels[idx].astype(np.int64) - 1]
    for axis in range(3):
        out[axis][idx] = (own[:, axis] - (idx[axis] + origin[axis])) * float(spacing[axis]) / OFFSET_SCALE_UM
    return out


def encode(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``maps (5, Z, Y, X)`` float -> probabilities ``(2, Z, Y, X)`` uint8 and offsets ``(3, Z, Y, X)`` int8
    (0 where the foreground rounds to 0)."""
    prob = np.clip(np.rint(maps[:PROBABILITY_CHANNELS] * 255), 0, 255).astype(np.uint8)
    off = np.clip(np.rint(maps[PROBABILITY_CHANNELS:] / OFFSET_STEP), -127, 127).astype(np.int8)
    off[:, prob[1] == 0] = 0
    return prob, off


def decode_probability(prob: np.ndarray) -> np.ndarray:
    """uint8 -> float32 probability in [0, 1]."""
    return prob.astype(np.float32) / 255.0


def decode_offsets(off: np.ndarray) -> np.ndarray:
    """int8 -> float32 offsets in offset units."""
    return off.astype(np.float32) * OFFSET_STEP
