"""Any voxel size: one synthetic scene rendered at the networks' grid, 2x coarser and 0.8x finer, run end to end.

Usage:
    python bench/voxel_size.py [--cells 15] [--extent 32 512 512] [--seed 7] [--cores 2] [--model WEIGHTS]
                               [--out /tmp/traice-voxel-size]

The scene is set in µm, so the same seed at another voxel size (and the shape
that keeps the same extent) renders the same cells. Each rendering runs through
the workflow with the defaults; the networks see every block resampled onto
their grid (traice/core/grid.py) and the results come back on the input's
voxels. Prints soma F1 against the truth, morphology medians (and the mean Sholl maximum: the median of a
count moves by whole intersections), the truth labels' median cell volume and the one-pass foreground's
volume over the whole field per rendering.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from run_config import run_config  # noqa: E402

from traice.core.geometry import Box  # noqa: E402
from traice.core.grid import MODEL_SPACING_UM  # noqa: E402
from traice.io.maps import MapReader  # noqa: E402
from traice.stages.evaluate import evaluate_run  # noqa: E402

SCALES = {"grid": 1.0, "coarse_2x": 2.0, "fine_0.8x": 0.8}
MORPHOLOGY = ["soma_volume_um3", "cell_volume_um3", "territory_volume_um3", "total_length_um", "n_branch_points",
              "sholl_max_intersections"]


def truth_cell_volume(results: Path, spacing) -> float:
    """Median cell volume (µm³) of the rendering's own truth labels: what a perfect segmentation on these voxels
    would measure."""
    truth = zarr.open_array(str(results / "input.ome.zarr" / "labels" / "cells" / "0"), mode="r")[...]
    voxels = np.bincount(np.asarray(truth).ravel())[1:]
    return float(np.median(voxels[voxels > 0]) * np.prod(spacing))


def foreground_volume(results: Path, spacing) -> float:
    """The one-pass foreground of the whole field as a volume (µm³): the stored foreground probability summed over
    every voxel, times the voxel's volume. It does not depend on the voxels where the network calls the same
    foreground in µm (a coarse voxel carries about the share of its grid voxels the foreground fills)."""
    shape = zarr.open_array(str(results / "segmentation.ome.zarr" / "0"), mode="r").shape
    reader = MapReader.from_index(results / "work" / "maps" / "index.parquet")
    return float(sum(reader.foreground(Box((z, 0, 0), (min(z + 8, shape[0]), *shape[1:]))).sum(dtype=np.float64)
                     for z in range(0, shape[0], 8)) * np.prod(spacing))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=15)
    ap.add_argument("--extent", type=int, nargs=3, default=[32, 512, 512],
                    help="the scene in voxels of the networks' grid (default: 40 x 205 x 205 µm)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--model", help="one-pass weights (detect.model; default: the shipped ones)")
    ap.add_argument("--out", default="/tmp/traice-voxel-size")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    samples = {}
    for name, scale in SCALES.items():
        spacing = [s * scale for s in MODEL_SPACING_UM]
        shape = [round(n / scale) for n in args.extent]
        samples[name] = {"synthetic": {"seed": args.seed, "shape": shape, "cells": args.cells, "spacing": spacing}}
    config = {"samples": samples, "results": str(out / "results")}
    if args.model:
        config["detect"] = {"model": str(Path(args.model).resolve())}
    run_config(config, out, args.cores)

    rows = []
    for name in SCALES:
        results = out / "results" / name
        scores = evaluate_run(results)
        morphology = pd.read_parquet(results / "morphology.parquet")
        rows.append({"rendering": name, "voxel (µm)": " × ".join(f"{s:g}" for s in samples[name]["synthetic"]["spacing"]),
                     "soma F1": round(scores["soma F1"], 3), "precision": round(scores["soma precision"], 3),
                     "recall": round(scores["soma recall"], 3), "clDice": round(scores["branch clDice (all true cells)"], 3),
                     "Dice": round(scores["branch Dice (all true cells)"], 3), "PQ": round(scores["PQ"], 3),
                     **{f"median {c}": round(float(morphology[c].median()), 1) for c in MORPHOLOGY if c in morphology},
                     "mean sholl_max_intersections": round(float(morphology["sholl_max_intersections"].mean()), 2),
                     "truth cell_volume_um3": round(truth_cell_volume(results, samples[name]["synthetic"]["spacing"]), 1),
                     "foreground µm³": round(foreground_volume(results, samples[name]["synthetic"]["spacing"]))})
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False))
    grid = table.iloc[0]
    for c in (c for c in table.columns if c.startswith(("median ", "mean ", "truth ", "foreground "))):
        spread = max(abs(v / grid[c] - 1) for v in table[c]) if grid[c] else float("nan")
        print(f"{c}: largest difference from the grid rendering {spread:.0%}")


if __name__ == "__main__":
    main()
