"""The detect step's speed per weights: every tile of a finished run, as a detect job runs it.

Usage:
    python bench/detect_speed.py --model A.pt B.pt [--results results/demo] [--threads 1] [--repeats 2]

A detect job of the workflow reads each tile's box, runs the one-pass network
over it in sliding windows and finds the somas in its soma channel
(``traice.stages.detect.detect_tile``), on one thread (Snakemake sets
``OMP_NUM_THREADS=1`` per job; two jobs run side by side on two cores). This
runs every tile of a finished run's plan (after ``make demo``:
``results/demo``) with each set of weights in turn, alternating tile by tile
so that a busy machine slows each alike, and prints the seconds per tile and
the core voxels per second of one job (the whole field's rate with ``N`` jobs
in parallel is about ``N`` times that). ``shipped`` names the shipped one-pass
weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.io.plan import Plan  # noqa: E402
from traice.stages.detect import DetectParams, detect_tile, load_detector  # noqa: E402
from traice.core.schema import kept_by_the_rule  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", required=True, help="weights files to compare ('shipped': the shipped ones)")
    ap.add_argument("--results", default="results/demo", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (one per job in the workflow)")
    ap.add_argument("--repeats", type=int, default=2, help="passes over the tiles (the first also warms up)")
    args = ap.parse_args()
    if args.repeats < 2:
        ap.error("--repeats must be 2 or more: the first pass only warms up")
    torch.set_num_threads(args.threads)
    plan = Plan.read(args.results / "work" / "plan" / "plan.json")
    tiles = [t for b in sorted(plan.tiles["batch"].unique()) for t in plan.tiles_of_batch(int(b))]
    params = {m: DetectParams(model=None if m == "shipped" else m) for m in args.model}
    models = {m: load_detector(p) for m, p in params.items()}
    seconds = {m: [] for m in args.model}
    found = {m: 0 for m in args.model}
    for repeat in range(args.repeats):
        for _, core, read in tiles:
            for m in args.model:
                started = time.perf_counter()
                somas, _ = detect_tile(plan.image, core, read, plan.stats, params[m], models[m])
                if repeat:  # the first pass warms up (allocations, kernels)
                    seconds[m].append(time.perf_counter() - started)
                else:
                    found[m] += int(kept_by_the_rule(somas).sum())  # those the merge keeps
    core_voxels = sum(int(np.prod(core.shape)) for _, core, _ in tiles)
    print(f"{len(tiles)} tiles, {core_voxels / 1e6:.1f} Mvoxel of cores, {args.threads} thread(s), "
          f"{args.repeats - 1} timed pass(es)")
    print(f"{'weights':40s} {'s per tile':>10s} {'Mvoxel/s':>9s} {'somas':>6s}")
    for m in args.model:
        per_pass = sum(seconds[m]) / max(1, args.repeats - 1)
        print(f"{m:40s} {per_pass / len(tiles):10.2f} {core_voxels / per_pass / 1e6:9.3f} {found[m]:6d}")


if __name__ == "__main__":
    main()
