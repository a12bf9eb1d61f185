"""The output tables' columns: dtype, unit and meaning (the README's schema section lists the same).

Writers cast to these dtypes, so every run, empty or not, gives the same schema. Of the work tables, the
detect step's column that the merge and the report read is here too (:data:`HAS_PROCESSES`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# column: (dtype, unit, meaning)
CELLS = {
    "sample": ("string", "", "sample name (the config's key), so tables of several animals concatenate"),
    "cell_id": ("int64", "", "cell identifier ≥ 1, the cell's value in the label image"),
    "z_um": ("float64", "µm", "soma centroid z, from the image origin (voxel index × voxel size)"),
    "y_um": ("float64", "µm", "soma centroid y"),
    "x_um": ("float64", "µm", "soma centroid x"),
    "z": ("int64", "voxel", "soma centroid, nearest level-0 voxel z"),
    "y": ("int64", "voxel", "soma centroid, nearest level-0 voxel y"),
    "x": ("int64", "voxel", "soma centroid, nearest level-0 voxel x"),
    "score": ("float64", "", "detection confidence of the soma (classical: peak contrast in background-noise sigmas); "
              "it does not tell microglia from other bright blobs: morphology's microglia_score does"),
}

MORPHOLOGY = {
    "sample": CELLS["sample"],
    "cell_id": CELLS["cell_id"],
    "z_um": CELLS["z_um"],
    "y_um": CELLS["y_um"],
    "x_um": CELLS["x_um"],
    "structure_id": ("int64", "", "atlas structure at the soma centre (0: outside the annotation, or no atlas)"),
    "structure": ("string", "", "that structure's acronym ('' when 0)"),
    "soma_volume_um3": ("float64", "µm³", "soma: the mask opened by a 2 µm ball, the part at the soma centre; a partial volume (each voxel weighed by its foreground probability) with the learned segmenters, whole voxels with the others"),
    "cell_volume_um3": ("float64", "µm³", "soma and processes (the label connected to the soma); a partial volume as soma_volume_um3"),
    "partial_volumes": ("bool", "", "True: the two volumes weigh each voxel by its foreground probability; False: they count whole voxels"),
    "territory_volume_um3": ("float64", "µm³", "convex hull of the cell"),
    "ramification_index": ("float64", "", "territory volume / cell volume (≈1 amoeboid, larger = ramified)"),
    "total_length_um": ("float64", "µm", ("total process length: the skeleton (terminal branches under 2 µm pruned; traced on the networks' grid where "
                         "the voxels are finer and the mask came from the maps) from where it leaves the soma (as NeuroM)")),
    "n_primary_processes": ("int64", "", "processes leaving the soma (the SWC's neurites)"),
    "n_branches": ("int64", "", "skeleton branches (between branch points and endpoints)"),
    "n_branch_points": ("int64", "", "branch points (junctions within 2 µm merged)"),
    "n_endpoints": ("int64", "", "skeleton endpoints"),
    "mean_branch_length_um": ("float64", "µm", "mean branch length along the skeleton"),
    "max_branch_length_um": ("float64", "µm", "longest branch"),
    "max_branch_order": ("int64", "", "highest centrifugal branch order from the soma (1 = primary)"),
    "mean_tortuosity": ("float64", "", "mean of branch path length / straight-line length"),
    "sholl_max_intersections": ("int64", "", "maximum of the Sholl profile (5 µm shells)"),
    "sholl_max_radius_um": ("float64", "µm", "shell radius of that maximum (0 when no shell is crossed)"),
    "sholl_auc": ("float64", "µm", "area under the Sholl profile (sum of intersections × 5 µm)"),
    "border_faces": ("string", "", "faces of the volume the cell touches ('z0 y1 ...'; '' none): its arbor may be cut"),
    "has_processes": ("bool", "", "at least 5 µm of process beyond the soma (False: likely a macrophage or lipofuscin)"),
    "microglia_score": ("float64", "", "0-1 evidence that this is a microglia, from its processes: "
                        "1 - exp(-total_length_um / 20 µm); < 0.5 likely a punctum or macrophage (docs/confidence.md)"),
    "n_components": ("int64", "", "separate pieces of the cell's label (morphology measures the piece at the soma)"),
    "status": ("string", "", "'ok', or why the cell has no mask"),
}

SHOLL = {
    "sample": CELLS["sample"],
    "cell_id": CELLS["cell_id"],
    "radius_um": ("float64", "µm", "shell radius around the soma centre (5, 10, ... µm)"),
    "intersections": ("int64", "", "skeleton crossings of that shell"),
}

REGIONS = {
    "sample": ("string", "", "sample name"),
    "region": ("string", "", "'all' (the ROI or whole image), a configured region, or an atlas structure's acronym"),
    "kind": ("string", "", "'all', 'box' (a configured µm box) or 'atlas' (a structure, rolled up over its descendants)"),
    "structure_id": ("int64", "", "atlas structure id (0 for 'all' and boxes)"),
    "parent_structure_id": ("int64", "", "the structure's parent in the hierarchy (0 at the root, and for 'all' and boxes)"),
    "structure_name": ("string", "", "the structure's full name ('' for 'all' and boxes)"),
    "depth": ("int64", "", "the structure's depth below the atlas root (0 at the root, and for 'all' and boxes)"),
    "n_cells": ("int64", "", "cells whose soma lies in the region (a structure: in it or any descendant)"),
    "n_segmented": ("int64", "", "of those, cells with a mask"),
    "tissue_volume_mm3": ("float64", "mm³", "tissue in the region (empty space excluded; a structure: its annotated volume)"),
    "density_per_mm3": ("float64", "1/mm³", "cells per mm³ of tissue"),
    **{f"median_{m}": ("float64", MORPHOLOGY[m][1], f"median {m} of the region's segmented cells")
       for m in ["soma_volume_um3", "cell_volume_um3", "territory_volume_um3", "ramification_index",
                 "total_length_um", "n_branch_points", "max_branch_order", "sholl_max_intersections"]},
}


HAS_PROCESSES = "has_processes"
"""The detect step's tables (``work/somas/batch_*.parquet``): the column that marks a detection the process rule
keeps (:mod:`traice.stages.detect.processes`); the merge leaves the others out and counts them."""


def all_kept(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every row marked as kept by the process rule (a detector without the one-pass maps, or the
    rule turned off)."""
    return table.assign(**{HAS_PROCESSES: np.ones(len(table), bool)})


def kept_by_the_rule(table: pd.DataFrame) -> np.ndarray:
    """(N,) bool: the rows of a detect step's table the process rule keeps; all of them for a table written
    before the ``has_processes`` column existed (its detections were dropped before they were written)."""
    return table[HAS_PROCESSES].to_numpy(bool) if HAS_PROCESSES in table else np.ones(len(table), bool)


def conform(df: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """The table with exactly the schema's columns, in order, cast to its dtypes."""
    df = df.reindex(columns=list(schema))
    return df.astype({c: d for c, (d, _, _) in schema.items()})
