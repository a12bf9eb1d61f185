"""Regions of interest: the boxes a run is restricted to, and which cells lie in them.

``roi`` in the config is one box ``{start_um, stop_um}`` (µm from the image
origin, z, y, x) or named boxes ``{name: {start_um, stop_um}}``; ``null`` is
the whole image. A cell belongs to the ROI when its soma centroid does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from traice.core.errors import InputError
from traice.core.geometry import Box


def named_boxes_um(roi: dict | None) -> dict[str, dict] | None:
    """The ROI config as named boxes: one ``{start_um, stop_um}`` box is named 'roi'."""
    if not roi:
        return None
    if "start_um" in roi:
        return {"roi": {"start_um": list(roi["start_um"]), "stop_um": list(roi["stop_um"])}}
    return {name: {"start_um": list(b["start_um"]), "stop_um": list(b["stop_um"])} for name, b in roi.items()}


def roi_boxes(roi: dict | None, bounds: Box, spacing: Sequence[float], key: str = "roi") -> dict[str, Box]:
    """The ROI boxes in level-0 voxels, inside the image (the whole image when ``roi`` is None).

    InputError, naming the config ``key`` and the box, for a box that is not
    ordered (start below stop on every axis) or lies outside the image.
    """
    named = named_boxes_um(roi)
    if named is None:
        return {"all": bounds}
    boxes = {}
    for name, b in named.items():
        check_ordered(f"{key} '{name}'", b)
        box = Box.from_um(b["start_um"], b["stop_um"], spacing).intersect(bounds)
        if box.empty:
            raise InputError(f"{key} '{name}' {b} does not overlap the image ({bounds.shape} voxels at {tuple(spacing)} µm)")
        boxes[name] = box
    return boxes


def check_ordered(what: str, box_um: dict) -> None:
    """InputError unless ``start_um`` lies below ``stop_um`` on every axis (z, y, x)."""
    bad = [ax for ax, a, b in zip("zyx", box_um["start_um"], box_um["stop_um"]) if not a < b]
    if bad:
        raise InputError(f"{what}: start_um {list(box_um['start_um'])} must lie below stop_um "
                         f"{list(box_um['stop_um'])} on every axis (not on {', '.join(bad)})")


def points_inside(points_um: np.ndarray, boxes: Sequence[Box], spacing: Sequence[float]) -> np.ndarray:
    """Whether each (N, 3) µm position lies in one of the level-0 voxel ``boxes``: bool (N,)."""
    vox = np.asarray(points_um, dtype=float).reshape(-1, 3) / np.asarray(spacing)
    inside = np.zeros(len(vox), bool)
    for box in boxes:
        inside |= box.contains_points(vox)
    return inside


def cells_inside(cells: pd.DataFrame, boxes: Sequence[Box], spacing: Sequence[float]) -> np.ndarray:
    """Whether each cell's soma (``z_um, y_um, x_um``) lies in one of ``boxes``: bool (N,)."""
    return points_inside(cells[["z_um", "y_um", "x_um"]].to_numpy(dtype=float), boxes, spacing)
