"""Windows: where a network looks.

Sliding windows (stage 1, :func:`traice.nn.inferer.sliding_window_probabilities`)
tile a padded volume at :func:`window_starts` per axis, as MONAI places them.

Cell windows (stage 2): one window per cell, centred on its soma, as the
prompted network sees it. Training (:func:`traice.training.data.branch_window`)
and inference (:func:`traice.stages.segment.network.segment_traice`) place and
sample windows with these functions, so the two agree voxel for voxel:

- a window covers ``extent = window * step`` image voxels, centred on the soma
  (plus a random shift in training) and moved back inside the image at its
  borders (:meth:`traice.core.geometry.Box.shift_inside`); on an axis where the
  image is smaller than the window, the window starts at the image's start
  and the rest is padding;
- the network's input is the window's model input averaged in blocks of
  ``step`` voxels (``window`` voxels), and the prompt is the soma's position in
  that coarse grid, where coarse voxel ``j`` is centred on image voxel
  ``start + j * step + (step - 1) / 2``.

Mirrored windows (``detect.mirror``, :class:`traice.nn.mirror.MirrorAverage`):
:func:`mirror_axes` names the axes a window is mirrored along; the config
checks use it too, without importing torch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from traice.core.geometry import Box

AXES = "zyx"
"""Names of the spatial axes, in the order of the last three dimensions of ``(B, C, Z, Y, X)``."""


def window_box(centre: Sequence[float], extent: Sequence[int], shape: Sequence[int],
               shift: Sequence[int] = (0, 0, 0)) -> Box:
    """The ``extent``-voxel box centred on ``centre`` (+ ``shift``), inside ``[0, shape)`` where it fits.

    The box always has ``extent`` voxels per axis; where the image is smaller it
    starts at 0 and reaches past the image (read it with padding).
    """
    start = [int(round(c)) - e // 2 + s for c, e, s in zip(centre, extent, shift)]
    inside = Box(tuple(start), tuple(a + e for a, e in zip(start, extent))).shift_inside(Box.from_shape(shape))
    return Box(inside.start, tuple(a + e for a, e in zip(inside.start, extent)))


def block_mean(array: np.ndarray, step: Sequence[int]) -> np.ndarray:
    """Mean over blocks of ``step`` voxels: ``(Z, Y, X) -> (Z/sz, Y/sy, X/sx)`` float32 (shape must divide)."""
    sz, sy, sx = (int(s) for s in step)
    z, y, x = array.shape
    if z % sz or y % sy or x % sx:
        raise ValueError(f"array shape {array.shape} does not divide by step {tuple(step)}")
    if (sz, sy, sx) == (1, 1, 1):
        return np.asarray(array, dtype=np.float32)
    blocks = np.asarray(array, dtype=np.float32).reshape(z // sz, sz, y // sy, sy, x // sx, sx)
    return blocks.mean(axis=(1, 3, 5), dtype=np.float32)


def window_point(centre: Sequence[float], box: Box, step: Sequence[int]) -> np.ndarray:
    """The soma at image voxel ``centre`` in the coarse voxel frame of the window ``box``: ``(3,)`` float32."""
    st = np.asarray(step, dtype=np.float64)
    return ((np.asarray(centre, dtype=np.float64) - np.asarray(box.start) - (st - 1) / 2) / st).astype(np.float32)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis of ``size`` voxels.

    Windows of ``window`` voxels every ``max(1, int(window * (1 - overlap)))``
    voxels from 0, as few as cover the axis; the last one is moved back to end
    exactly at ``size``. A ``size`` no larger than ``window`` gives ``[0]``
    (a smaller axis is padded up to the window). Same positions as MONAI's
    ``sliding_window_inference``.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    if size <= window:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    count = -(-(size - window) // step) + 1  # smallest k with (k - 1) * step + window >= size
    return [min(k * step, size - window) for k in range(count)]


def padding(shape: Sequence[int], window: Sequence[int]) -> list[tuple[int, int]]:
    """``(before, after)`` per axis that pads ``shape`` up to at least ``window``.

    The missing voxels are split with the odd one after, as MONAI pads.
    """
    out = []
    for size, w in zip(shape, window):
        missing = max(w - size, 0)
        out.append((missing // 2, missing - missing // 2))
    return out


def mirror_axes(axes: str) -> tuple[int, ...]:
    """``"yx" -> (1, 2)``: positions in ``AXES`` of the named axes (each at most once, any order)."""
    if not isinstance(axes, str) or any(a not in AXES for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"mirror axes must be distinct letters of {AXES!r}, got {axes!r}")
    return tuple(sorted(AXES.index(a) for a in axes))
