"""Stage-2 branch segmentation: traice vs traice without RCAM vs the classical baseline, per cell.

Usage:
    python bench/stage2.py [--split test] [--data ../shared/data/morphomics_kxa] [--model PATH]
                           [--ablation PATH] [--device auto] [--no-demo]

Data: as bench/stage1.py, the held-out fields of view of the real tracings
(rendered with seed 0; training never saw them) and the demo volume. Every
method is prompted with the *true* soma positions, so detection errors do not
enter: each cell's mask is segmented (traice.stages.segment), all masks are stitched
into one label image by the highest claim (traice.stages.stitch.compose, as the
workflow does), and each cell's label is scored against its true arbor
(soma + processes): Dice and clDice (traice.core.metrics.cldice) in their joint
bounding box. Cells are "dense" when another soma lies within 30 µm, else
"isolated". Time per cell is the wall time of segmenting all cells of the
volume (reading, normalising, network or thresholds, claims) over their number.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stage1 import add_volume_arguments, volumes  # noqa: E402  (the same held-out volumes as the stage-1 bench)
from traice.core.geometry import Box  # noqa: E402
from traice.nn.device import pick_device  # noqa: E402
from traice.io.ome import ArrayImage  # noqa: E402
from traice.core.metrics import cldice, per_cell_dice  # noqa: E402
from traice.io.claims import collect_index, write_masks  # noqa: E402
from traice.nn.checkpoints import load_prompted  # noqa: E402
from traice.core.intensity import robust_stats  # noqa: E402
from traice.stages.segment import SegmentParams  # noqa: E402
from traice.stages.segment.classical import segment_cell  # noqa: E402
from traice.stages.segment.network import segment_traice  # noqa: E402
from traice.stages.stitch import compose  # noqa: E402
from traice.weights import shipped_weights  # noqa: E402

DENSE_UM = 30.0


def segment_all(method: str, image: ArrayImage, cells: pd.DataFrame, stats: dict, model, device: str):
    """Claims of every cell and the wall time they took."""
    started = time.perf_counter()
    if model is None:
        params = SegmentParams(method="classical")
        masks = [segment_cell(image, row, stats, params) for _, row in cells.iterrows()]
    else:
        params = SegmentParams(method="prompted", device=device)
        masks = segment_traice(image, cells, stats, params, model)
    return masks, time.perf_counter() - started


def stitched(masks, shape) -> np.ndarray:
    """The workflow's composition of the claims (highest claim wins) over the whole volume."""
    with tempfile.TemporaryDirectory() as tmp:
        write_masks(masks, Path(tmp) / "masks.zarr")
        return compose(Box.from_shape(shape), collect_index([Path(tmp) / "masks.zarr"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_volume_arguments(ap)
    ap.add_argument("--model", help="stage-2 weights (default: the shipped ones)")
    ap.add_argument("--ablation", help="stage-2 weights trained without RCAM (same budget), scored as 'no RCAM'")
    args = ap.parse_args()
    methods = {"traice": load_prompted(args.model or shipped_weights("branch"))}
    if args.ablation:
        methods["no RCAM"] = load_prompted(args.ablation)
    methods["classical"] = None
    device = str(pick_device(args.device))

    rows = []
    for dataset, name, brain in volumes(args):
        spacing = np.asarray(brain.params.spacing)
        truth = brain.truth.sort_values("cell_id").reset_index(drop=True)
        cells = truth[["cell_id", "z", "y", "x"]]
        somas_um = truth[["z", "y", "x"]].to_numpy() * spacing
        neighbours = cKDTree(somas_um).query(somas_um, k=2)[0][:, 1] if len(truth) > 1 else np.full(len(truth), np.inf)
        dense = neighbours <= DENSE_UM
        stats = robust_stats(brain.image[:, ::2, ::2])
        image = ArrayImage(brain.image, spacing)
        pairs = [(int(c), int(c)) for c in truth["cell_id"]]
        for method, model in methods.items():
            masks, seconds = segment_all(method, image, cells, stats, model, device)
            labels = stitched(masks, brain.image.shape)
            d = per_cell_dice(labels, brain.cells, pairs)
            cl = per_cell_dice(labels, brain.cells, pairs, score=cldice)
            rows.append({"dataset": dataset, "volume": name, "method": method, "cells": len(truth),
                         "dense": int(dense.sum()), "dice": d, "cldice": cl, "is_dense": dense,
                         "s_per_cell": seconds / max(len(truth), 1)})
            print(f"{name[:34]:<34} {method:<10} cells {len(truth):>3} (dense {dense.sum():>3})  Dice {d.mean():.3f}  "
                  f"clDice {cl.mean():.3f}  {seconds / max(len(truth), 1):.3f} s/cell", flush=True)

    print(f"\nper-cell means; dense = another soma within {DENSE_UM:g} µm; device {device} "
          f"({torch.get_num_threads()} threads on the CPU)")
    header = (f"{'dataset':<12} {'method':<10} {'cells':>5} {'Dice':>6} {'clDice':>6} {'Dice dense':>10} "
              f"{'Dice isol.':>10} {'clDice dense':>12} {'clDice isol.':>12} {'s/cell':>7}")
    print(header)
    table = pd.DataFrame(rows)
    for (dataset, method), part in table.groupby(["dataset", "method"], sort=False):
        d, cl, dn = (np.concatenate(part[k].to_list()) for k in ("dice", "cldice", "is_dense"))
        seconds = float((part["s_per_cell"] * part["cells"]).sum() / part["cells"].sum())

        def mean(x):
            return f"{x.mean():.3f}" if len(x) else "-"

        print(f"{dataset:<12} {method:<10} {len(d):>5} {mean(d):>6} {mean(cl):>6} {mean(d[dn]):>10} {mean(d[~dn]):>10} "
              f"{mean(cl[dn]):>12} {mean(cl[~dn]):>12} {seconds:>7.3f}")


if __name__ == "__main__":
    main()
