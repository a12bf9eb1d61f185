"""Region summaries: cell counts, density per mm³ of tissue (the plan's tissue mask) and median morphology."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from traice.core.geometry import Box
from traice.core.schema import REGIONS, conform
from traice.io.plan import Plan
from traice.io.tables import write_table

MEDIAN_METRICS = [c.removeprefix("median_") for c in REGIONS if c.startswith("median_")]
Boxes = list[tuple[np.ndarray, np.ndarray]]


def region_boxes(regions: dict | None, roi: dict | None, shape_um: Sequence[float]) -> dict[str, Boxes]:
    """Named regions, each a union of (start_um, stop_um) boxes: 'all' plus configured regions.

    'all' is what the result covers: the ROI boxes (``roi``, named boxes in µm) of
    a run restricted to them, otherwise the whole image.
    """
    def um(box: dict) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(box["start_um"], float), np.asarray(box["stop_um"], float)

    out = {"all": [um(b) for b in roi.values()] if roi else [(np.zeros(3), np.asarray(shape_um, float))]}
    for name, r in (regions or {}).items():
        out[name] = [um(r)]
    return out


def summarise(sample: str, cells: pd.DataFrame, morphology: pd.DataFrame, tissue: np.ndarray,
              tissue_spacing: Sequence[float], boxes: dict[str, Boxes]) -> pd.DataFrame:
    """One row per region: counts, tissue volume, density (cells / mm³ of tissue), median metrics."""
    pos = cells[["z_um", "y_um", "x_um"]].to_numpy(dtype=float).reshape(-1, 3)
    ok = morphology[morphology["status"] == "ok"].set_index("cell_id")
    voxel_mm3 = float(np.prod(tissue_spacing)) * 1e-9
    rows = []
    for name, union in boxes.items():
        inside = np.zeros(len(pos), bool)
        covered = np.zeros(tissue.shape, bool)
        for lo, hi in union:
            inside |= np.all((pos >= lo) & (pos < hi), axis=1)
            covered[Box.from_um(lo, hi, tissue_spacing).intersect(Box.from_shape(tissue.shape)).slices] = True
        ids = cells["cell_id"].to_numpy()[inside]
        tissue_mm3 = float(tissue[covered].sum()) * voxel_mm3
        seg = ok.loc[ok.index.intersection(ids)]
        row = {"sample": sample, "region": name, "n_cells": int(inside.sum()), "n_segmented": len(seg),
               "tissue_volume_mm3": tissue_mm3,
               "density_per_mm3": inside.sum() / tissue_mm3 if tissue_mm3 > 0 else float("nan")}
        for m in MEDIAN_METRICS:
            row[f"median_{m}"] = float(seg[m].median()) if len(seg) else float("nan")
        rows.append(row)
    return conform(pd.DataFrame(rows), REGIONS)


def write_regions(sample: str, plan: Plan, cells_path, morphology_path, regions: dict | None, out_path) -> pd.DataFrame:
    """regions.parquet of a finished run: one row per region (:func:`summarise`) with the plan's tissue mask."""
    roi = None if plan.update else plan.info["roi_um"]
    shape_um = np.asarray(plan.shape) * np.asarray(plan.spacing)
    table = summarise(sample, pd.read_parquet(cells_path), pd.read_parquet(morphology_path), plan.tissue,
                      plan.tissue_spacing, region_boxes(regions, roi, shape_um))
    write_table(table, Path(out_path))
    return table
