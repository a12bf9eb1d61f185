"""Skeleton spurs: terminal branch lengths of traced arbors, and of the workflow's cell skeletons at three voxel sizes.

Usage:
    python bench/spurs.py [--split val] [--data ../shared/data/morphomics_kxa] [--run /tmp/traice-voxel-size]

First the terminal branches of the split's tracings (tip to the first branch
point, along the trace). Then, when ``--run`` names the ``--out`` folder of a
finished ``bench/voxel_size.py``, the terminal branches (junction to tip) of
every cell's skeleton in each rendering, skeletonised as the morphology step
does before it prunes them (``traice.stages.morphology.prune_spurs``). Prints
per source the terminal branches per cell, their median length and the share
shorter than 1, 2 and 3 µm.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
import zarr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skimage.morphology import skeletonize  # noqa: E402

from traice.core.geometry import Box  # noqa: E402
from traice.core.skeleton import TIP_JUNCTION, SkeletonGraph  # noqa: E402
from traice.stages.morphology import cell_mask  # noqa: E402
from traice.synth.traces import field_split, read_field, trace_fields  # noqa: E402

SHORTER_THAN_UM = (1.0, 2.0, 3.0)


def traced_terminal_lengths(tree) -> np.ndarray:
    """Lengths (µm) of a tracing's terminal branches: from each tip along its parents to the first branch point
    (or the root). ``tree``: (xyz (N, 3) µm, radius (N,), parent (N,) index, -1 at the root)."""
    xyz, _, parent = tree
    children = np.bincount(parent[parent >= 0], minlength=len(parent))
    lengths = []
    for tip in np.flatnonzero(children == 0):
        length, node = 0.0, tip
        while parent[node] >= 0:
            length += float(np.linalg.norm(xyz[node] - xyz[parent[node]]))
            node = parent[node]
            if children[node] != 1:
                break
        lengths.append(length)
    return np.asarray(lengths)


def skeleton_terminal_lengths(results: Path, spacing) -> list[np.ndarray]:
    """Per segmented cell of a finished run, the lengths (µm) of its unpruned skeleton's terminal branches."""
    labels = zarr.open_array(str(results / "segmentation.ome.zarr" / "0"), mode="r")
    index = pd.read_parquet(results / "work" / "masks" / "index.parquet").set_index("cell_id")
    out = []
    for _, cell in pd.read_parquet(results / "cells.parquet").iterrows():
        cid = int(cell["cell_id"])
        read = cell_mask(labels, cell, Box.from_row(index.loc[cid], "box")) if cid in index.index else None
        if read is None:
            continue
        skel = skeletonize(read[0]) > 0
        if skel.sum() < 2:
            continue
        branches = SkeletonGraph(skel, spacing).branches()
        out.append(branches.loc[branches["branch_type"] == TIP_JUNCTION, "branch_distance"].to_numpy())
    return out


def row(source: str, per_cell: list[np.ndarray]) -> dict:
    lengths = np.concatenate(per_cell) if per_cell else np.zeros(0)
    return {"source": source, "cells": len(per_cell), "terminal branches": len(lengths),
            "per cell": round(len(lengths) / max(len(per_cell), 1), 1),
            "median µm": round(float(np.median(lengths)), 2) if len(lengths) else float("nan"),
            **{f"< {t:g} µm": round(float(np.mean(lengths < t)), 3) if len(lengths) else float("nan")
               for t in SHORTER_THAN_UM}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "morphomics_kxa"))
    ap.add_argument("--run", help="the --out folder of a finished bench/voxel_size.py")
    args = ap.parse_args()
    rows = []
    if Path(args.data).exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SWC files read_field skips
            trees = [t for folder in field_split(trace_fields(args.data))[args.split] for t in read_field(folder)]
        rows.append(row(f"tracings ({args.split})", [traced_terminal_lengths(t) for t in trees]))
    else:
        print(f"no tracings at {args.data}: skipped", file=sys.stderr)
    if args.run:
        run = Path(args.run)
        config = yaml.safe_load((run / "config.yaml").read_text())
        for name, sample in config["samples"].items():
            spacing = sample["synthetic"]["spacing"]
            rows.append(row(f"{name} skeletons", skeleton_terminal_lengths(run / "results" / name, spacing)))
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
