"""Regions of interest: restrict a run to boxes, and re-run a region in place over a previous result.

A run with ``roi`` changes only what lies in the ROI; everything else stays as
it was: empty on a first run, the previous result when the sample already has
a finished one (an *update*). In an update

- cells whose soma lies outside the ROI keep their row, label voxels, morphology
  and SWC file unchanged; cells inside are detected and segmented again (a new
  cell at the place of an old one inherits its ``cell_id``);
- label voxels can change only inside the ROI grown by the segmentation radius
  (the *affected* boxes), and there only where they do not belong to a kept cell.

Snakemake deletes a job's outputs before it runs, so the previous result is
moved (renamed, never copied) into ``work/base`` when the plan of an update is
made; ``label_init`` moves the label image back and ``stitch`` patches it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from traice.geometry import Box
from traice.io.ome import InputError
from traice.io.tables import read_json, write_json

LABELS = "segmentation.ome.zarr"
CARRIED = ("cells.parquet", "morphology.parquet", "sholl.parquet", "swc", LABELS)
FINISHED = "run.json"  # written last by a run: its presence marks a finished result


def named_boxes_um(roi: dict | None) -> dict[str, dict] | None:
    """The ROI config as named boxes: one ``{start_um, stop_um}`` box is named 'roi'."""
    if not roi:
        return None
    if "start_um" in roi:
        return {"roi": {"start_um": list(roi["start_um"]), "stop_um": list(roi["stop_um"])}}
    return {name: {"start_um": list(b["start_um"]), "stop_um": list(b["stop_um"])} for name, b in roi.items()}


def roi_boxes(roi: dict | None, bounds: Box, spacing: Sequence[float]) -> dict[str, Box]:
    """The ROI boxes in level-0 voxels, inside the image (the whole image when ``roi`` is None)."""
    named = named_boxes_um(roi)
    if named is None:
        return {"all": bounds}
    boxes = {}
    for name, b in named.items():
        box = Box.from_um(b["start_um"], b["stop_um"], spacing).intersect(bounds)
        if box.empty:
            raise InputError(f"roi '{name}' {b} does not overlap the image ({bounds.shape} voxels at {tuple(spacing)} µm)")
        boxes[name] = box
    return boxes


def plan_boxes(plan: dict, key: str = "roi_boxes") -> list[Box]:
    """The ROI (``roi_boxes``) or affected (``affected_boxes``) boxes of a plan."""
    return [Box.from_row(row, "box") for row in plan[key].values()]


def inside_roi(points_um: np.ndarray, plan: dict) -> np.ndarray:
    """Whether each (N, 3) µm position lies in one of the plan's ROI boxes (bool, N)."""
    vox = np.asarray(points_um, dtype=float).reshape(-1, 3) / np.asarray(plan["spacing_um"])
    inside = np.zeros(len(vox), bool)
    for box in plan_boxes(plan):
        inside |= box.contains_points(vox)
    return inside


def cells_inside(cells: pd.DataFrame, plan: dict) -> np.ndarray:
    """Whether each cell's soma lies in the ROI: the cells this run (re)processes."""
    return inside_roi(cells[["z_um", "y_um", "x_um"]].to_numpy(dtype=float), plan)


def cells_to_process(cells: pd.DataFrame, plan: dict) -> pd.DataFrame:
    """The cells this run segments and measures (those in the ROI)."""
    return cells[cells_inside(cells, plan)]


def kept_ids(cells: pd.DataFrame, plan: dict) -> np.ndarray:
    """``cell_id``s of the cells outside the ROI: a region update leaves them as they were."""
    return cells["cell_id"].to_numpy()[~cells_inside(cells, plan)]


def base_dir(sample_dir: str | Path) -> Path:
    return Path(sample_dir) / "work" / "base"


def prepare_base(sample_dir: str | Path, roi: dict | None) -> bool:
    """Set aside the previous result a run with ``roi`` updates; returns whether this run is an update.

    A finished result (``run.json`` present) is moved into ``work/base``, replacing
    an older base. An unfinished one is the interrupted update of the same ROI
    (its base is kept; its partly patched label image goes back to the base); an
    unfinished update of another ROI is refused, since finishing it first is the
    only way to keep both regions consistent. Without ``roi`` the base is dropped.
    Every step is a rename, so a killed plan job redone gives the same base.
    """
    sample_dir, base = Path(sample_dir), base_dir(sample_dir)
    named = named_boxes_um(roi)
    if named is None:
        shutil.rmtree(base, ignore_errors=True)
        return False
    if (sample_dir / FINISHED).exists():
        base.mkdir(parents=True, exist_ok=True)
        write_json({"roi_um": named}, base / "roi.json")
        for name in CARRIED:
            if (sample_dir / name).exists():
                _remove(base / name)
                os.replace(sample_dir / name, base / name)
        os.replace(sample_dir / FINISHED, base / FINISHED)  # last: the base is now complete
        return True
    if not (base / FINISHED).exists():
        return False
    previous = read_json(base / "roi.json")["roi_um"]
    if previous != named:
        raise InputError(f"the update of roi {previous} was interrupted; re-run it with that roi before updating roi {named}")
    if (sample_dir / LABELS).exists() and not (base / LABELS).exists():
        os.replace(sample_dir / LABELS, base / LABELS)
    return True


def take_base_labels(sample_dir: str | Path, labels_path: str | Path) -> None:
    """Move the base label image to ``labels_path``, where ``stitch`` patches it."""
    source = base_dir(sample_dir) / LABELS
    if not source.exists():
        raise InputError(f"region update: the previous label image is missing from {source}")
    os.replace(source, labels_path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
