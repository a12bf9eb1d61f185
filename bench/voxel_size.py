"""Any voxel size: one synthetic scene rendered at the networks' grid, 2x coarser and 0.8x finer, run end to end.

Usage:
    python bench/voxel_size.py [--cells 15] [--extent 32 512 512] [--seed 7] [--cores 2] [--model WEIGHTS]
                               [--min-processes 0.005] [--out /tmp/traice-voxel-size] [--rendering NAME=Z,Y,X ...]

The scene is set in µm, so the same seed at another voxel size (and the shape
that keeps the same extent) renders the same cells. Each rendering runs through
the workflow with the defaults; the networks see every block resampled onto
their grid (traice/core/grid.py) and the results come back on the input's
voxels. ``--rendering`` replaces the three renderings by others, each named and
given its voxel as multiples of the grid's along z, y and x (for example
``grid=1,1,1 thick_planes=1.6,0.75,0.75``: 2 µm planes of 0.3 µm pixels); the
first is the one the others are compared with.

Prints per rendering: soma F1 against the truth; morphology medians (and the
mean Sholl maximum: the median of a count moves by whole intersections); the
truth labels' median cell volume, total length and Sholl maximum (what a
perfect segmentation on those voxels would measure); the one-pass
foreground's volume over the whole field.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from run_config import run_config  # noqa: E402

from traice.core.geometry import Box  # noqa: E402
from traice.core.grid import MODEL_SPACING_UM  # noqa: E402
from traice.io.maps import MapReader  # noqa: E402
from traice.stages.evaluate import evaluate_run  # noqa: E402
from traice.stages.morphology import measure  # noqa: E402

SCALES = {"grid": (1.0, 1.0, 1.0), "coarse_2x": (2.0, 2.0, 2.0), "fine_0.8x": (0.8, 0.8, 0.8)}
FAR_UM = 3.0
"""Foreground farther than this from every true cell is counted apart: the background the network calls foreground."""
MORPHOLOGY = ["soma_volume_um3", "cell_volume_um3", "territory_volume_um3", "total_length_um", "n_branch_points",
              "sholl_max_intersections"]


def truth_cell_volume(results: Path, spacing) -> float:
    """Median cell volume (µm³) of the rendering's own truth labels: what a perfect segmentation on these voxels
    would measure."""
    truth = zarr.open_array(str(results / "input.ome.zarr" / "labels" / "cells" / "0"), mode="r")[...]
    voxels = np.bincount(np.asarray(truth).ravel())[1:]
    return float(np.median(voxels[voxels > 0]) * np.prod(spacing))


def truth_morphology(results: Path, spacing) -> dict[str, float]:
    """Median total length (µm) and Sholl maximum of the rendering's own truth labels, each cell measured by
    :func:`traice.stages.morphology.measure` on the labels' voxels (as ``bench/arbors.py`` measures true masks):
    what a perfect segmentation on these voxels would measure."""
    labels = np.asarray(zarr.open_array(str(results / "input.ome.zarr" / "labels" / "cells" / "0"), mode="r")[...])
    truth = pd.read_parquet(results / "input.truth.parquet")
    boxes = ndimage.find_objects(labels)
    rows = []
    for cell in truth.itertuples():
        box = boxes[cell.cell_id - 1] if cell.cell_id <= len(boxes) else None
        if box is None:
            continue
        soma = [c - s.start for c, s in zip((cell.z, cell.y, cell.x), box)]
        metrics, _, _ = measure(labels[box] == cell.cell_id, spacing, soma)
        rows.append(metrics)
    rows = pd.DataFrame(rows)
    return {c: float(rows[c].median()) for c in ("total_length_um", "sholl_max_intersections")}


def foreground_volume(results: Path, spacing, far_um: float = FAR_UM) -> tuple[float, float]:
    """The one-pass foreground of the whole field as a volume (µm³): the stored foreground probability summed over
    every voxel, times the voxel's volume; and the part of it farther than ``far_um`` from every true cell (the
    rendering's truth labels), which no cell's arbor explains. Neither depends on the voxels where the network
    calls the same foreground in µm (a coarse voxel carries about the share of its grid voxels the foreground
    fills)."""
    labels = zarr.open_array(str(results / "input.ome.zarr" / "labels" / "cells" / "0"), mode="r")
    far = ndimage.distance_transform_edt(np.asarray(labels[...]) == 0, sampling=spacing) > far_um
    reader = MapReader.from_index(results / "work" / "maps" / "index.parquet")
    total = away = 0.0
    for z in range(0, labels.shape[0], 8):
        slab = Box((z, 0, 0), (min(z + 8, labels.shape[0]), *labels.shape[1:]))
        foreground = reader.foreground(slab).astype(np.float64)
        total += float(foreground.sum())
        away += float(foreground[far[slab.slices]].sum())
    return total * float(np.prod(spacing)), away * float(np.prod(spacing))


def rendering(spec: str) -> tuple[str, tuple[float, float, float]]:
    """``"NAME=Z,Y,X"`` -> ``(NAME, (z, y, x))``: a rendering's name and its voxel as multiples of the grid's."""
    name, _, scale = spec.partition("=")
    try:
        values = tuple(float(v) for v in scale.split(","))
    except ValueError:
        values = ()
    if not name or len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{spec!r} is not NAME=Z,Y,X with three positive multiples of the grid's voxel")
    return name, values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=15)
    ap.add_argument("--extent", type=int, nargs=3, default=[32, 512, 512],
                    help="the scene in voxels of the networks' grid (default: 40 x 205 x 205 µm)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--model", help="one-pass weights (detect.model; default: the shipped ones)")
    ap.add_argument("--min-processes", type=float,
                    help="detect.min_processes (default: the config's): drop detections with less process evidence")
    ap.add_argument("--out", default="/tmp/traice-voxel-size")
    ap.add_argument("--rendering", nargs="+", type=rendering, metavar="NAME=Z,Y,X",
                    help="renderings to run instead of the three (voxel as multiples of the grid's per axis)")
    args = ap.parse_args()
    scales = dict(args.rendering) if args.rendering else SCALES
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    samples = {}
    for name, scale in scales.items():
        spacing = [s * k for s, k in zip(MODEL_SPACING_UM, scale)]
        shape = [round(n / k) for n, k in zip(args.extent, scale)]
        samples[name] = {"synthetic": {"seed": args.seed, "shape": shape, "cells": args.cells, "spacing": spacing}}
    config = {"samples": samples, "results": str(out / "results")}
    if args.model:
        config.setdefault("detect", {})["model"] = str(Path(args.model).resolve())
    if args.min_processes is not None:
        config.setdefault("detect", {})["min_processes"] = args.min_processes
    run_config(config, out, args.cores)

    rows = []
    for name in scales:
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
                     **{f"truth {c}": round(v, 1) for c, v in truth_morphology(results, samples[name]["synthetic"]["spacing"]).items()},
                     **dict(zip(("foreground µm³", f"foreground µm³ > {FAR_UM:g} µm from cells"),
                                (round(v) for v in foreground_volume(results, samples[name]["synthetic"]["spacing"]))))})
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False))
    grid = table.iloc[0]
    for c in (c for c in table.columns if c.startswith(("median ", "mean ", "truth ", "foreground "))):
        spread = max(abs(v / grid[c] - 1) for v in table[c]) if grid[c] else float("nan")
        print(f"{c}: largest difference from the grid rendering {spread:.0%}")


if __name__ == "__main__":
    main()
