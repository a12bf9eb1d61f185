"""Real tissue: the cellfinder two-photon planes (5 x 2 x 2 µm) from TIFF planes through the whole workflow.

Usage:
    python bench/cellfinder.py [--data ../shared/data/cellfinder_crop] [--roi Z0 Y0 X0 Z1 Y1 X1]
                               [--detect traice classical] [--figure docs/figures/cellfinder.png]
                               [--min-processes 0.005]
                               [--out /tmp/traice-cellfinder]

The sample is the folder of planes with its voxel size (the files carry none);
the workflow converts it, resamples every block onto the networks' grid for
detection, and maps the results back. The 56 annotated somas are not
exhaustive (the image holds many more cells), so only recall means something:
the share of annotated somas inside the ROI with a detection within 10 µm.
Prints a table per detection method; with --figure, draws a maximum projection
of the ROI with the annotations and the detections.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
SPACING = (5.0, 2.0, 2.0)
MATCH_UM = 10.0
# in the band the annotations lie in (planes 10-19), the 200 x 260 µm window holding most of them (19),
# in µm from the origin, z y x (the whole band takes ~20 min on 2 cores at the networks' grid)
ANNOTATED_ROI = (40.0, 480.0, 200.0, 110.0, 680.0, 460.0)


def annotations(xml: Path) -> np.ndarray:
    """Annotated soma centres (N, 3), µm, z y x (the file gives voxels: X, Y and Z = plane)."""
    text = xml.read_text()
    found = re.findall(r"<MarkerX>(\d+)</MarkerX>\s*<MarkerY>(\d+)</MarkerY>\s*<MarkerZ>(\d+)</MarkerZ>", text)
    voxels = np.array([(int(z), int(y), int(x)) for x, y, z in found], dtype=float)
    return voxels * np.asarray(SPACING)


def recall(truth_um: np.ndarray, found_um: np.ndarray) -> tuple[int, int]:
    """(annotated somas with a detection within MATCH_UM, annotated somas)."""
    if len(truth_um) == 0 or len(found_um) == 0:
        return 0, len(truth_um)
    dist, _ = cKDTree(found_um).query(truth_um)
    return int((dist <= MATCH_UM).sum()), len(truth_um)


def run(data: Path, roi, method: str, out: Path, min_processes: float | None = None) -> pd.DataFrame:
    config = {
        "samples": {"cellfinder": {"path": str(data / "signal"), "voxel_size_um": list(SPACING)}},
        "results": str(out / method),
        "roi": {"start_um": list(roi[:3]), "stop_um": list(roi[3:])},
        "detect": {"method": method},
    }
    if method != "traice":
        config["segment"] = {"method": "classical"}
    elif min_processes is not None:
        config["detect"]["min_processes"] = min_processes
    path = out / f"{method}.yaml"
    path.write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", "rules", "--configfile", str(path)],
                   cwd=ROOT, check=True)
    return pd.read_parquet(out / method / "cellfinder" / "cells.parquet")


def figure(image_path: Path, roi, truth: np.ndarray, found: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import zarr

    start = [int(a / s) for a, s in zip(roi[:3], SPACING)]
    stop = [int(b / s) for b, s in zip(roi[3:], SPACING)]
    block = np.asarray(zarr.open_array(str(image_path / "0"), mode="r")[tuple(slice(a, b) for a, b in zip(start, stop))])
    mip = block.max(axis=0).astype(float)
    lo, hi = np.percentile(mip, [1, 99.7])
    extent = [roi[2], roi[5], roi[4], roi[1]]
    fig, ax = plt.subplots(figsize=(10, 7))
    ax.imshow(np.clip((mip - lo) / (hi - lo), 0, 1), cmap="gray", extent=extent)
    ax.scatter(truth[:, 2], truth[:, 1], s=120, facecolors="none", edgecolors="yellow", linewidths=1.2,
               label="annotated soma")
    for (name, pts), colour in zip(found.items(), ["red", "cyan"]):
        ax.scatter(pts[:, 2], pts[:, 1], s=14, c=colour, marker="+", label=f"detected ({name})")
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    ax.set_title("cellfinder two-photon planes, maximum projection of the ROI")
    ax.legend(loc="lower right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cellfinder_crop")
    ap.add_argument("--roi", type=float, nargs=6, default=ANNOTATED_ROI)
    ap.add_argument("--detect", nargs="+", default=["traice", "classical"], choices=["traice", "classical"])
    ap.add_argument("--figure", type=Path)
    ap.add_argument("--min-processes", type=float,
                    help="traice: detect.min_processes (default: the config's); 0 keeps every detection")
    ap.add_argument("--out", type=Path, default=Path("/tmp/traice-cellfinder"))
    args = ap.parse_args()
    if not (args.data / "signal").is_dir():
        sys.exit(f"{args.data}: no signal/ folder of planes (the cellfinder crop is not here)")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    roi = tuple(args.roi)
    truth = annotations(args.data / "cell_classification.xml")
    inside = truth[((truth >= np.asarray(roi[:3])) & (truth < np.asarray(roi[3:]))).all(axis=1)]
    rows, found = [], {}
    for method in args.detect:
        cells = run(args.data, roi, method, args.out, args.min_processes)
        found[method] = cells[["z_um", "y_um", "x_um"]].to_numpy()
        hit, n = recall(inside, found[method])
        rows.append({"detect": method, "annotated somas in ROI": n, "recalled within 10 µm": hit,
                     "recall": round(hit / max(n, 1), 3), "cells detected": len(cells)})
    print(pd.DataFrame(rows).to_markdown(index=False))
    if args.figure:
        image = args.out / args.detect[0] / "cellfinder" / "input.ome.zarr"
        figure(image, roi, inside, found, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
