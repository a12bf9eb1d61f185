"""Region summaries: cell counts, density per mm³ of tissue (see traice.tissue) and median morphology."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from traice.geometry import Box
from traice.io.ome import open_image
from traice.io.tables import read_json, write_table
from traice.schema import REGIONS, conform
from traice.tissue import tissue_mask

MEDIAN_METRICS = [c.removeprefix("median_") for c in REGIONS if c.startswith("median_")]
def region_boxes(regions: dict | None, roi: dict | None, shape_um: Sequence[float]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Named boxes (start_um, stop_um): 'all' (the ROI or whole image) plus configured regions."""
    boxes = {"all": (np.asarray(roi["start_um"], float), np.asarray(roi["stop_um"], float)) if roi
             else (np.zeros(3), np.asarray(shape_um, float))}
    for name, r in (regions or {}).items():
        boxes[name] = (np.asarray(r["start_um"], float), np.asarray(r["stop_um"], float))
    return boxes


def summarise(sample: str, cells: pd.DataFrame, morphology: pd.DataFrame, tissue: np.ndarray,
              tissue_spacing: Sequence[float], boxes: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """One row per region: counts, tissue volume, density (cells / mm³ of tissue), median metrics."""
    pos = cells[["z_um", "y_um", "x_um"]].to_numpy(dtype=float).reshape(-1, 3)
    ok = morphology[morphology["status"] == "ok"].set_index("cell_id")
    voxel_mm3 = float(np.prod(tissue_spacing)) * 1e-9
    rows = []
    for name, (lo, hi) in boxes.items():
        inside = np.all((pos >= lo) & (pos < hi), axis=1)
        ids = cells["cell_id"].to_numpy()[inside]
        box = Box.from_um(lo, hi, tissue_spacing).intersect(Box.from_shape(tissue.shape))
        tissue_mm3 = float(tissue[box.slices].sum()) * voxel_mm3
        seg = ok.loc[ok.index.intersection(ids)]
        row = {"sample": sample, "region": name, "n_cells": int(inside.sum()), "n_segmented": len(seg),
               "tissue_volume_mm3": tissue_mm3,
               "density_per_mm3": inside.sum() / tissue_mm3 if tissue_mm3 > 0 else float("nan")}
        for m in MEDIAN_METRICS:
            row[f"median_{m}"] = float(seg[m].median()) if len(seg) else float("nan")
        rows.append(row)
    return conform(pd.DataFrame(rows), REGIONS)


def write_regions(sample: str, plan_path, cells_path, morphology_path, regions: dict | None, out_path) -> pd.DataFrame:
    plan = read_json(plan_path)
    image = open_image(plan["image"], plan["channel"])
    tissue, spacing = tissue_mask(image)
    roi = plan.get("roi_um")
    shape_um = np.asarray(plan["shape"]) * np.asarray(plan["spacing_um"])
    table = summarise(sample, pd.read_parquet(cells_path), pd.read_parquet(morphology_path), tissue, spacing,
                      region_boxes(regions, roi, shape_um))
    write_table(table, Path(out_path))
    return table
