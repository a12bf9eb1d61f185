"""Orchestration at whole-brain scale: build the DAG (dry run) for 100 000 cells over a 10^12-voxel image.

Usage:
    python bench/dag.py [--cells 100000] [--shape 2000 20000 25000] [--out /tmp/traice-dag]

It writes an image that has only metadata (no voxel is stored: zarr returns its
fill value), runs the real `plan` step on it, writes empty detection tables and
a synthetic cells.parquet, so that Snakemake finds plan and merge done; then it
times `snakemake -n` (DAG building, all checkpoints evaluated) and reports its
peak memory. Prints a table.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.config import from_config  # noqa: E402
from traice.io.multiscale import create_multiscale  # noqa: E402
from traice.io.tables import write_table  # noqa: E402
from traice.core.batching import n_cell_batches  # noqa: E402
from traice.stages.plan import PlanParams, write_plan  # noqa: E402
from traice.core.schema import CELLS, conform  # noqa: E402

SPACING = (1.25, 0.4, 0.4)
# batch sizes for a whole brain (jobs stay in the hundreds to thousands)
WHOLE_BRAIN = {
    "plan": {"tile_shape": [128, 1024, 1024], "tiles_per_job": 64},
    "segment": {"cells_per_job": 500},
    "morphology": {"cells_per_job": 2000},
    "stitch": {"chunk": [64, 512, 512], "chunks_per_job": [4, 4, 4]},
}


def metadata_only_image(path: Path, shape) -> None:
    """An NGFF 0.5 uint16 image of ``shape`` whose chunks are never written (reads give the fill value)."""
    create_multiscale(path, shape, SPACING, "uint16", footprint=(64, 512, 512), name="brain", fill_value=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--shape", type=int, nargs=3, default=[2000, 20000, 25000])
    ap.add_argument("--out", default="/tmp/traice-dag")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    image = out / "brain.ome.zarr"
    metadata_only_image(image, args.shape)

    results = out / "results"
    work = results / "brain" / "work"
    config = {"samples": {"brain": str(image)}, "results": str(results), **WHOLE_BRAIN}
    (out / "config.yaml").write_text(yaml.safe_dump(config))

    t = time.time()
    stitch = WHOLE_BRAIN["stitch"]
    plan = write_plan(image, None, work / "plan", from_config(
        PlanParams, WHOLE_BRAIN["plan"], stitch_chunk=stitch["chunk"], stitch_chunks_per_job=stitch["chunks_per_job"]))
    plan_s = time.time() - t
    for b in range(plan.info["tile_batches"]):
        write_table(pd.DataFrame({"z": [], "y": [], "x": [], "score": []}), work / "somas" / f"batch_{b}.parquet")
    rng = np.random.default_rng(0)
    vox = np.sort(rng.integers(0, np.asarray(args.shape), size=(args.cells, 3)), axis=0)
    cells = conform(pd.DataFrame({"cell_id": np.arange(1, args.cells + 1), "z": vox[:, 0], "y": vox[:, 1], "x": vox[:, 2],
                                  "z_um": vox[:, 0] * SPACING[0], "y_um": vox[:, 1] * SPACING[1],
                                  "x_um": vox[:, 2] * SPACING[2], "score": 1.0}), CELLS)
    write_table(cells, results / "brain" / "cells.parquet")
    now = time.time()
    for p in [image, *image.rglob("*")]:
        os.utime(p, (now - 30, now - 30))  # the input is older than what was made from it

    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "all", "--cores", "1",
                           "--configfile", str(out / "config.yaml")], cwd=ROOT, capture_output=True, text=True)
    dag_s = time.time() - t
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])

    voxels = int(np.prod(args.shape))
    rows = [
        ("image voxels", f"{voxels:.3g}"),
        ("cells", f"{args.cells}"),
        ("tiles (with tissue)", f"{plan.info['tiles']}"),
        ("plan step (s)", f"{plan_s:.1f}"),
        ("detect jobs", str(counts.get("detect", 0))),
        ("segment jobs", str(counts.get("segment", 0))),
        ("stitch jobs", str(counts.get("stitch", 0))),
        ("morphology jobs", str(counts.get("morphology_batch", 0))),
        ("expected segment jobs", str(n_cell_batches(args.cells, WHOLE_BRAIN["segment"]["cells_per_job"]))),
        ("all jobs", str(counts.get("total", 0))),
        ("DAG build, snakemake -n (s)", f"{dag_s:.1f}"),
        ("DAG build peak RSS (MB)", f"{peak_mb:.0f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'quantity':<{width}}  value")
    print(f"{'-' * width}  -----")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
