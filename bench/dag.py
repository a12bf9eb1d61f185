"""Orchestration at whole-brain scale: build the workflow's DAG (dry run) for millions of cells.

Usage:
    python bench/dag.py [--cells 4000000] [--shape 4800 20000 25000] [--batching adaptive fixed]
                        [--out /tmp/traice-dag]

For each batching it writes an image that has only metadata (no voxel is
stored: zarr returns its fill value), runs the real ``plan`` step on it, writes
what the detect jobs and the merge leave behind (empty detection tables and map
groups, a synthetic ``cells.parquet`` of ``--cells`` rows and its count), so
that Snakemake finds plan, detect and merge done; then it times ``snakemake -n``
(DAG building, every checkpoint evaluated) and reports its peak memory. A
second dry run after half the segment and stitch jobs have left their outputs
is the cost of resuming a killed run. Prints one table, a column per batching:

- ``adaptive``: the shipped defaults (config/config.yaml): batches grow so that
  no step has more than ``max_jobs`` jobs;
- ``fixed``: hand-set whole-brain batches (64 tiles, 500 and 2000 cells per
  job, stitch blocks of 4 x 4 x 4 chunks of 64 x 512 x 512) with no cap, the
  setting of the first whole-brain benchmark: many more jobs.
"""

from __future__ import annotations

import argparse
import copy
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

from traice.config import from_config, with_defaults  # noqa: E402
from traice.core.batching import n_batches  # noqa: E402
from traice.core.schema import CELLS, conform  # noqa: E402
from traice.io.maps import write_map_index, write_maps  # noqa: E402
from traice.io.multiscale import create_multiscale  # noqa: E402
from traice.io.tables import write_json, write_table  # noqa: E402
from traice.stages.plan import PlanParams, write_plan  # noqa: E402

SPACING = (1.25, 0.4, 0.4)
UNCAPPED = 10**9
BATCHINGS = {
    "adaptive": {},
    "fixed": {
        "plan": {"tile_shape": [128, 1024, 1024], "tiles_per_job": 64, "max_jobs": UNCAPPED},
        "segment": {"cells_per_job": 500, "max_jobs": UNCAPPED},
        "morphology": {"cells_per_job": 2000, "max_jobs": UNCAPPED},
        "stitch": {"chunk": [64, 512, 512], "chunks_per_job": [4, 4, 4], "max_jobs": UNCAPPED},
    },
}


def metadata_only_image(path: Path, shape) -> None:
    """An NGFF 0.5 uint16 image of ``shape`` whose chunks are never written (reads give the fill value)."""
    create_multiscale(path, shape, SPACING, "uint16", footprint=(64, 512, 512), name="brain", fill_value=100)


def synthetic_cells(n: int, shape) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    vox = np.sort(rng.integers(0, np.asarray(shape), size=(n, 3)), axis=0)
    return conform(pd.DataFrame({"cell_id": np.arange(1, n + 1), "z": vox[:, 0], "y": vox[:, 1], "x": vox[:, 2],
                                 "z_um": vox[:, 0] * SPACING[0], "y_um": vox[:, 1] * SPACING[1],
                                 "x_um": vox[:, 2] * SPACING[2], "score": 1.0}), CELLS)


def dry_run(config_path: Path) -> tuple[float, float, dict[str, int]]:
    """Seconds, peak RSS (MB) and job counts per rule of ``snakemake -n`` in a child process of its own."""
    probe = ("import resource, subprocess, sys, time; t = time.time(); "
             "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(time.time() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, p.returncode); "
             "print(p.stdout[-20000:]); print(p.stderr[-3000:], file=sys.stderr)")
    cmd = [sys.executable, "-c", probe, sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "1", "--rerun-triggers", "mtime",
           "--configfile", str(config_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    head, *lines = proc.stdout.splitlines()
    seconds, peak_mb, rc = head.split()
    if int(rc) != 0:
        sys.exit(proc.stderr[-3000:])
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return float(seconds), float(peak_mb), counts


def prepare(out: Path, shape, n_cells: int, batching: dict) -> tuple[Path, float, dict]:
    """Image, plan, detect and merge outputs of one sample; returns its config file, the plan step's seconds
    and the merged config."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    image = out / "brain.ome.zarr"
    metadata_only_image(image, shape)
    results = out / "results"
    sample = results / "brain"
    work = sample / "work"
    user = {"samples": {"brain": str(image)}, "results": str(results), **copy.deepcopy(batching)}
    config = with_defaults(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), user)
    (out / "config.yaml").write_text(yaml.safe_dump(user))

    t = time.time()
    stitch = config["stitch"]
    plan = write_plan(image, None, work / "plan", from_config(
        PlanParams, config["plan"], stitch_chunk=stitch["chunk"], stitch_chunks_per_job=stitch["chunks_per_job"],
        stitch_max_jobs=stitch["max_jobs"], margin_um=config["segment"]["radius_um"], maps_cover_margin=True))
    plan_s = time.time() - t
    groups = []
    for b in range(plan.info["tile_batches"]):
        write_table(pd.DataFrame({"z": [], "y": [], "x": [], "score": []}), work / "somas" / f"batch_{b}.parquet")
        groups.append(work / "maps" / f"batch_{b}.zarr")
        write_maps([], groups[-1])
    write_table(synthetic_cells(n_cells, shape), sample / "cells.parquet")
    write_json({"cells": n_cells, "to_process": n_cells}, work / "cells_to_process.json")
    write_table(pd.DataFrame({"group": [], "tile": []}), work / "maps" / "index.parquet")  # written by maps_index
    _age(image, 60)
    _age(work / "plan", 40)
    _age(work / "somas", 30)
    _age(work / "maps", 30)
    return out / "config.yaml", plan_s, config


def _age(path: Path, seconds: float) -> None:
    """Date ``path`` and everything in it ``seconds`` back, so that Snakemake sees inputs older than outputs."""
    then = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (then, then))


def half_done(out: Path, n_segment: int, block_ids: list[int]) -> None:
    """Leave the outputs of the first half of the segment and stitch jobs, as a run killed halfway would."""
    work = out / "results" / "brain" / "work"
    for b in range(n_segment // 2):
        (work / "masks" / f"batch_{b}.zarr").mkdir(parents=True)
    (work / "stitch").mkdir(parents=True, exist_ok=True)
    for k in block_ids[: len(block_ids) // 2]:
        write_json({"labelled_voxels": 0}, work / "stitch" / f"block_{k}.done")
    (out / "results" / "brain" / "segmentation.ome.zarr").mkdir()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=4_000_000)
    ap.add_argument("--shape", type=int, nargs=3, default=[4800, 20000, 25000])
    ap.add_argument("--batching", nargs="+", choices=sorted(BATCHINGS), default=["adaptive", "fixed"])
    ap.add_argument("--out", default="/tmp/traice-dag")
    args = ap.parse_args()

    columns = {}
    for name in args.batching:
        out = Path(args.out) / name
        config_path, plan_s, config = prepare(out, args.shape, args.cells, BATCHINGS[name])
        plan = yaml.safe_load((out / "results" / "brain" / "work" / "plan" / "plan.json").read_text())
        dag_s, dag_mb, counts = dry_run(config_path)
        n_segment = n_batches(args.cells, config["segment"]["cells_per_job"], config["segment"]["max_jobs"])
        half_done(out, n_segment, plan["stitch_block_ids"])
        resume_s, resume_mb, resume_counts = dry_run(config_path)
        columns[name] = [
            f"{np.prod(args.shape, dtype=float):.3g}", str(args.cells), str(plan["tiles"]), f"{plan_s:.1f}",
            f"{plan['tiles_per_job']}", str(counts.get("segment", 0)), str(counts.get("stitch", 0)),
            str(counts.get("morphology_batch", 0)), str(counts.get("total", 0)),
            f"{dag_s:.1f}", f"{dag_mb:.0f}",
            str(resume_counts.get("total", 0)), f"{resume_s:.1f}", f"{resume_mb:.0f}",
        ]
    labels = ["image voxels", "cells", "tiles (with tissue)", "plan step (s)", "tiles per detect job",
              "segment jobs", "stitch jobs", "morphology jobs", "jobs in the DAG",
              "DAG build, snakemake -n (s)", "DAG build peak RSS (MB)",
              "jobs left after half the segment and stitch jobs", "resume DAG build (s)", "resume peak RSS (MB)"]
    width = max(len(k) for k in labels)
    print(f"| {'quantity':<{width}} | " + " | ".join(columns) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * (len(c) + 2) for c in columns) + "|")
    for i, label in enumerate(labels):
        print(f"| {label:<{width}} | " + " | ".join(f"{columns[c][i]:>{len(c)}}" for c in columns) + " |")


if __name__ == "__main__":
    main()
