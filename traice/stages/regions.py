"""Region summaries: cell counts, density per mm³ of tissue and median morphology.

Rows for 'all' (the ROI or whole image) and each configured µm box measure tissue
with the plan's tissue mask; with an atlas (:class:`traice.io.atlas.Atlas`), one
row per structure rolled up its hierarchy: a structure counts the cells and the
annotation volume of itself and all its descendants, inside 'all'.
"""

from __future__ import annotations

from pathlib import Path
import logging
from typing import Sequence

import numpy as np
import pandas as pd

from traice.core.geometry import Box
from traice.io.atlas import Atlas
from traice.core.schema import REGIONS, conform
from traice.io.plan import Plan
from traice.io.tables import write_table

log = logging.getLogger(__name__)
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


def _inside(pos: np.ndarray, union: Boxes) -> np.ndarray:
    inside = np.zeros(len(pos), bool)
    for lo, hi in union:
        inside |= np.all((pos >= lo) & (pos < hi), axis=1)
    return inside


def _stats(ids: np.ndarray, ok: pd.DataFrame, tissue_mm3: float) -> dict:
    """Counts, tissue volume, density and median metrics of the cells ``ids`` (``ok``: segmented cells' rows)."""
    seg = ok.loc[ok.index.intersection(ids)]
    row = {"n_cells": len(ids), "n_segmented": len(seg), "tissue_volume_mm3": tissue_mm3,
           "density_per_mm3": len(ids) / tissue_mm3 if tissue_mm3 > 0 else float("nan")}
    for m in MEDIAN_METRICS:
        row[f"median_{m}"] = float(seg[m].median()) if len(seg) else float("nan")
    return row


def summarise(sample: str, cells: pd.DataFrame, morphology: pd.DataFrame, tissue: np.ndarray,
              tissue_spacing: Sequence[float], boxes: dict[str, Boxes], atlas: Atlas | None = None) -> pd.DataFrame:
    """One row per region: counts, tissue volume, density (cells / mm³ of tissue), median metrics;
    then, with an ``atlas``, one per structure inside 'all' (:func:`atlas_rows`) from morphology's
    ``structure_id``."""
    pos = cells[["z_um", "y_um", "x_um"]].to_numpy(dtype=float).reshape(-1, 3)
    ok = morphology[morphology["status"] == "ok"].set_index("cell_id")
    voxel_mm3 = float(np.prod(tissue_spacing)) * 1e-9
    rows = []
    for name, union in boxes.items():
        covered = np.zeros(tissue.shape, bool)
        for lo, hi in union:
            covered[Box.from_um(lo, hi, tissue_spacing).intersect(Box.from_shape(tissue.shape)).slices] = True
        ids = cells["cell_id"].to_numpy()[_inside(pos, union)]
        rows.append({"region": name, "kind": "all" if name == "all" else "box",
                     **_stats(ids, ok, float(tissue[covered].sum()) * voxel_mm3)})
    if atlas is not None:  # each cell's structure as morphology.parquet gives it (read there from the atlas)
        ids = cells["cell_id"].to_numpy()[_inside(pos, boxes["all"])]
        structure = morphology.set_index("cell_id")["structure_id"]
        rows += atlas_rows(atlas, ids, structure.loc[ids].to_numpy(), ok, boxes["all"])
    table = pd.DataFrame(rows).assign(sample=sample)
    for col in ("structure_id", "parent_structure_id", "depth"):
        table[col] = table[col].fillna(0) if col in table else 0
    table["structure_name"] = table["structure_name"].fillna("") if "structure_name" in table else ""
    return conform(table, REGIONS)


def atlas_rows(atlas: Atlas, cell_ids: np.ndarray, structure_ids: np.ndarray, ok: pd.DataFrame,
               union: Boxes) -> list[dict]:
    """One row per structure holding cells or annotated volume inside ``union``, in the structure table's
    order, each rolled up over its descendants (cells ``cell_ids`` at ``structure_ids``)."""
    lineages: dict[int, list[int]] = {}

    def lineage(sid: int) -> list[int]:
        if sid not in lineages:
            lineages[sid] = atlas.lineage(sid)
        return lineages[sid]

    members: dict[int, list[int]] = {}
    for cid, sid in zip(cell_ids.tolist(), structure_ids.tolist()):
        for s in lineage(sid):
            members.setdefault(s, []).append(cid)
    volume: dict[int, int] = {}
    for sid, n in atlas.voxel_counts(union).items():
        for s in lineage(int(sid)):
            volume[s] = volume.get(s, 0) + int(n)
    unknown = sorted({int(s) for s in structure_ids if s != 0 and not lineage(int(s))})
    if unknown:
        log.warning("atlas %s: cells lie in ids not in the structure table: %s", atlas.where, unknown[:20])
    rows = []
    for sid, info in atlas.structures.iterrows():
        if sid not in members and sid not in volume:
            continue
        rows.append({"region": info["acronym"], "kind": "atlas", "structure_id": int(sid),
                     "parent_structure_id": int(info["parent_id"]), "structure_name": info["name"],
                     "depth": int(info["depth"]),
                     **_stats(np.asarray(members.get(sid, []), np.int64), ok, volume.get(sid, 0) * atlas.voxel_mm3)})
    return rows


def write_regions(sample: str, plan: Plan, cells_path, morphology_path, regions: dict | None, out_path,
                  atlas: dict | None = None) -> pd.DataFrame:
    """regions.parquet of a finished run: one row per region (:func:`summarise`) with the plan's tissue mask,
    and per atlas structure when ``atlas`` ({annotation, structures} paths) is given."""
    roi = None if plan.update else plan.info["roi_um"]
    shape_um = np.asarray(plan.shape) * np.asarray(plan.spacing)
    opened = Atlas.open(atlas["annotation"], atlas["structures"], plan.shape, plan.spacing) if atlas else None
    table = summarise(sample, pd.read_parquet(cells_path), pd.read_parquet(morphology_path), plan.tissue,
                      plan.tissue_spacing, region_boxes(regions, roi, shape_um), opened)
    write_table(table, Path(out_path))
    return table
