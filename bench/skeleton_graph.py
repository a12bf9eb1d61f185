"""Skeleton graphs: traice's numpy/scipy branch decomposition against skan's, as a morphology job pays for them.

Each cell of a finished run's label image is skeletonised (as the morphology
step does, on its own voxels), and its branch table is built by
``traice.core.skeleton.SkeletonGraph`` and by skan 0.13 (``Skeleton`` +
``summarize``, a test dependency of traice), each in a fresh interpreter as a
morphology job is, so skan's numba compilation is counted where a job pays it.
Prints the seconds for the first cell (compilation included), for all cells,
and whether every cell's table is the same.

    .venv/bin/python bench/skeleton_graph.py --results results/demo
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["skeleton_id", "node_id_src", "node_id_dst", "branch_distance", "branch_type", "euclidean_distance"]

WORKER = r"""
import json, sys, time
import numpy as np
t0 = time.perf_counter()
which, path = sys.argv[1], sys.argv[2]
data = np.load(path)
spacing = tuple(data["spacing"])
if which == "skan":
    from skan import Skeleton, summarize
    table = lambda image: summarize(Skeleton(image, spacing=spacing), separator="_")
else:
    from traice.core.skeleton import SkeletonGraph
    table = lambda image: SkeletonGraph(image, spacing).branches()
imported = time.perf_counter()
times, tables = [], []
for key in sorted(k for k in data.files if k.startswith("cell_")):
    t = time.perf_counter()
    branches = table(data[key])
    times.append(time.perf_counter() - t)
    tables.append(branches[%r].to_numpy(float).tolist())
json.dump({"import_s": imported - t0, "times": times, "tables": tables}, sys.stdout)
""" % COLUMNS


def cell_skeletons(results: Path, limit: int) -> tuple[dict, tuple]:
    """Skeleton images of the run's cells (their label's voxels in their box, skeletonised) and the voxel size."""
    import pandas as pd
    import zarr
    from skimage.morphology import skeletonize

    sys.path.insert(0, str(ROOT))
    from traice.core.geometry import Box
    from traice.io.plan import Plan
    from traice.stages.morphology import cell_mask

    plan = Plan.read(results / "work" / "plan" / "plan.json")
    labels = zarr.open_array(str(results / "segmentation.ome.zarr" / "0"), mode="r")
    index = pd.read_parquet(results / "work" / "masks" / "index.parquet").set_index("cell_id")
    cells = pd.read_parquet(results / "cells.parquet").sort_values("cell_id")
    out = {}
    for _, cell in cells.iterrows():
        if cell["cell_id"] not in index.index or len(out) >= limit:
            continue
        read = cell_mask(labels, cell, Box.from_row(index.loc[cell["cell_id"]], "box"))
        if read is not None:
            skeleton = skeletonize(read[0]) > 0
            if skeleton.sum() >= 2:
                out[f"cell_{int(cell['cell_id']):06d}"] = skeleton
    return out, tuple(float(s) for s in plan.spacing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "demo", help="a finished run's results folder")
    parser.add_argument("--cells", type=int, default=1000, help="at most this many cells")
    args = parser.parse_args()
    skeletons, spacing = cell_skeletons(args.results, args.cells)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "skeletons.npz"
        np.savez(path, spacing=np.asarray(spacing), **skeletons)
        runs = {}
        for which in ("skan", "traice"):
            done = subprocess.run([sys.executable, "-c", WORKER, which, str(path)], check=True, capture_output=True,
                                  text=True, cwd=ROOT)
            runs[which] = json.loads(done.stdout)
    same = all(len(a) == len(b) and np.allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-9)
               for a, b in zip(runs["skan"]["tables"], runs["traice"]["tables"]))
    n_voxels = sum(int(s.sum()) for s in skeletons.values())
    print(f"{len(skeletons)} cells of {args.results}, {n_voxels} skeleton voxels, voxels {spacing} µm; "
          f"every branch table the same: {same}\n")
    print("| branch tables by | import (s) | first cell (s) | all cells (s) | per further cell (ms) |")
    print("|---|---|---|---|---|")
    for which, name in (("skan", "skan 0.13 (numba)"), ("traice", "traice.core.skeleton (numpy, scipy)")):
        times = runs[which]["times"]
        print(f"| {name} | {runs[which]['import_s']:.2f} | {times[0]:.2f} | {sum(times):.2f} | "
              f"{1e3 * float(np.mean(times[1:])) if len(times) > 1 else float('nan'):.1f} |")


if __name__ == "__main__":
    main()
