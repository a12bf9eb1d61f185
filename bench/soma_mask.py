"""The soma opening of the morphology step: in a box around the soma, against the whole cell mask.

Usage:
    python bench/soma_mask.py [--results results/demo] [--repeats 3]

The morphology step finds each cell's soma by opening its mask with a 2 µm
ball (processes vanish) and keeping the component at the soma
(traice.stages.morphology.soma_mask). It first opens only a box of
``SOMA_NEAR_UM`` around the soma (plus the ball's reach twice over) and opens
the whole mask where that box cannot tell. This reads every cell of a finished
run (after ``make demo``: ``results/demo``) from its label image as the
morphology step does, times both ways alternately, cell by cell, and checks
that they give the same soma.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.core.geometry import Box  # noqa: E402
from traice.io.plan import Plan  # noqa: E402
from traice.stages.morphology import SOMA_NEAR_UM, cell_mask, soma_mask  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/demo", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    labels_path = args.results / "segmentation.ome.zarr"
    labels = zarr.open_array(str(labels_path / "0"), mode="r")
    spacing = Plan.read(args.results / "work" / "plan" / "plan.json").spacing
    cells = pd.read_parquet(args.results / "cells.parquet")
    index = pd.read_parquet(args.results / "work" / "masks" / "index.parquet").set_index("cell_id")
    whole_um = 1e6  # a box larger than any mask: the whole mask is opened
    times = {SOMA_NEAR_UM: [], whole_um: []}
    same, voxels = 0, []
    for _, cell in cells.iterrows():
        read = cell_mask(labels, cell, Box.from_row(index.loc[int(cell["cell_id"])], "box"))
        if read is None:
            continue
        mask, _, soma, _ = read
        voxels.append(mask.size)
        found = {}
        for _ in range(args.repeats):
            for near in times:
                started = time.perf_counter()
                found[near] = soma_mask(mask, soma, spacing, near_um=near)
                times[near].append(time.perf_counter() - started)
        same += np.array_equal(found[SOMA_NEAR_UM], found[whole_um])
    n = len(voxels)
    print(f"{n} cells of {args.results}, spacing {tuple(spacing)} µm, median mask box {int(np.median(voxels))} voxels")
    print(f"{'soma opening':<34} {'median ms/cell':>14} {'total s':>8}")
    for near, label in ((whole_um, "whole mask"), (SOMA_NEAR_UM, f"box of {SOMA_NEAR_UM:g} µm, whole where needed")):
        per_cell = np.reshape(times[near], (n, args.repeats)).min(axis=1)
        print(f"{label:<34} {1e3 * np.median(per_cell):>14.1f} {per_cell.sum():>8.2f}")
    print(f"same soma: {same} of {n} cells")


if __name__ == "__main__":
    main()
