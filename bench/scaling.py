"""Bounded memory, linear time: the workflow on the demo volume and on one with 4x the voxels.

Usage:
    python bench/scaling.py [--out /tmp/traice-scaling] [--cores 2]

Both inputs are synthetic fields of the same cell density, written beforehand
with `traice synth` (so generating them is not part of what is measured) and
run as ordinary samples. Per rule, wall time is summed over its jobs and peak
RSS is the largest job's, from Snakemake's `benchmark:` files. Prints a table
with the 4x / 1x ratios (targets: time <= 4.4x, peak RSS <= 1.2x).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.synth import SynthParams, synthesize, write_synthetic  # noqa: E402

SIZES = {"1x": ((32, 1024, 1024), 60), "4x": ((32, 2048, 2048), 240)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/traice-scaling")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for name, (shape, cells) in SIZES.items():
        image = out / f"{name}.ome.zarr"
        if not image.exists():
            write_synthetic(synthesize(SynthParams(shape=shape, cells=cells, seed=0)), image)
        cfg = out / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({"samples": {name: str(image)}, "results": str(out / "results")}))
        t = time.time()
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--quiet", "all",
                        "--configfile", str(cfg), "--forceall"], cwd=ROOT, check=True)
        wall = time.time() - t
        run = json.loads((out / "results" / name / "run.json").read_text())
        runs[name] = {"wall": wall, "timings": run["timings"], "cells": run["counts"]["cells_detected"]}

    small, big = runs["1x"], runs["4x"]
    print(f"{'rule':<18} {'1x s':>8} {'4x s':>8} {'time x':>7} {'1x MB':>8} {'4x MB':>8} {'RSS x':>6}")
    print("-" * 70)
    for rule in small["timings"]:
        a, b = small["timings"][rule], big["timings"].get(rule)
        if b is None:
            continue
        print(f"{rule:<18} {a['wall_s']:>8.1f} {b['wall_s']:>8.1f} {b['wall_s'] / a['wall_s']:>7.2f} "
              f"{a['max_rss_mb']:>8.0f} {b['max_rss_mb']:>8.0f} {b['max_rss_mb'] / a['max_rss_mb']:>6.2f}")
    total_a = sum(v["wall_s"] for v in small["timings"].values())
    total_b = sum(v["wall_s"] for v in big["timings"].values())
    peak_a = max(v["max_rss_mb"] for v in small["timings"].values())
    peak_b = max(v["max_rss_mb"] for v in big["timings"].values())
    print("-" * 70)
    print(f"{'all jobs':<18} {total_a:>8.1f} {total_b:>8.1f} {total_b / total_a:>7.2f} "
          f"{peak_a:>8.0f} {peak_b:>8.0f} {peak_b / peak_a:>6.2f}")
    print(f"{'workflow wall':<18} {small['wall']:>8.1f} {big['wall']:>8.1f} {big['wall'] / small['wall']:>7.2f}")
    print(f"cells detected: 1x {small['cells']}, 4x {big['cells']}")


if __name__ == "__main__":
    main()
