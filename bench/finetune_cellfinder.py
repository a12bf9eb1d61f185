"""Fine-tuning on real tissue: the cellfinder two-photon planes (5 × 2 × 2 µm), from a few clicked somas.

Usage:
    python bench/finetune_cellfinder.py [--clicks 5 10 20] [--modes lora full] [--steps 150]
                                        [--data ../shared/data/cellfinder_crop] [--out /tmp/traice-finetune-cellfinder]

The planes are converted once to OME-Zarr (voxel size given, the files carry
none). The annotated somas are split in space: those in the window that
``bench/cellfinder.py`` scores (z 40–110, y 480–680, x 200–460 µm, 19 somas)
are held out; the clicks are the first N of the others, in x order, that lie at
least ``GAP_UM`` (y, x) from that window, so no training window sees a held-out
cell. The annotations are not exhaustive, so no box is given as complete: the
soma channel learns only the ball at each click and the shell around it
(traice.training.finetune).

Scored on the held-out window, detected as the workflow detects (default
settings, input resampled onto the networks' grid):
- recall: held-out somas with a detection within 10 µm;
- detections per recalled soma: how many detections lie within 10 µm of each
  recalled soma (1 is one detection per cell; more is one cell split into
  several);
- precision and F1 against the annotations (one-to-one within 10 µm): a lower
  bound, since the window holds unannotated cells;
- the detections in the window.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cellfinder import ANNOTATED_ROI, MATCH_UM, SPACING, annotations  # noqa: E402
from traice.core.geometry import Box  # noqa: E402
from traice.core.metrics import match_points  # noqa: E402
from traice.io.convert import convert  # noqa: E402
from traice.io.ome import open_image  # noqa: E402
from traice.stages.detect.network import detect_traice, load  # noqa: E402
from traice.stages.detect.params import DetectParams  # noqa: E402
from traice.stages.plan import image_tissue, intensity_stats  # noqa: E402
from traice.training.finetune import FinetuneConfig, finetune  # noqa: E402

GAP_UM = 40.0
"""Clicks lie at least this far (y, x) from the held-out window: a training window (51 µm wide) around
a click then never reaches a held-out soma."""


def held_out_split(truth_um: np.ndarray, roi) -> tuple[np.ndarray, np.ndarray]:
    """(held-out somas inside ``roi``, click candidates at least GAP_UM from it in y and x, in x order)."""
    start, stop = np.asarray(roi[:3]), np.asarray(roi[3:])
    inside = ((truth_um >= start) & (truth_um < stop)).all(axis=1)
    outside_yx = np.maximum(start[1:] - truth_um[:, 1:], truth_um[:, 1:] - stop[1:]).max(axis=1)
    clicks = truth_um[outside_yx >= GAP_UM]
    return truth_um[inside], clicks[np.argsort(clicks[:, 2], kind="stable")]


def score(model, image, stats: dict, roi, held_out: np.ndarray) -> dict:
    """Recall, detections per recalled soma, precision and F1 (lower bound) in ``roi`` against ``held_out``."""
    box = Box(tuple(int(a / s) for a, s in zip(roi[:3], SPACING)), tuple(int(b / s) for b, s in zip(roi[3:], SPACING)))
    found = detect_traice(image.read(box), image.spacing, stats, DetectParams(), model)
    found_um = (found[["z", "y", "x"]].to_numpy(float) + np.asarray(box.start)) * np.asarray(SPACING)
    near = cKDTree(found_um).query_ball_point(held_out, MATCH_UM) if len(found_um) else [[] for _ in held_out]
    counts = np.array([len(n) for n in near])
    match = match_points(found_um, held_out, max_distance_um=MATCH_UM)
    recalled = counts[counts > 0]
    return {"recall": float((counts > 0).mean()), "per recalled soma": float(recalled.mean()) if len(recalled) else 0.0,
            "precision (lower bound)": match.precision, "F1 (lower bound)": match.f1, "detections": len(found_um)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clicks", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--modes", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cellfinder_crop")
    ap.add_argument("--no-baseline", action="store_true", help="skip the row without fine-tuning")
    ap.add_argument("--out", type=Path, default=Path("/tmp/traice-finetune-cellfinder"))
    args = ap.parse_args()
    if not (args.data / "signal").is_dir():
        sys.exit(f"{args.data}: no signal/ folder of planes (the cellfinder crop is not here)")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "cellfinder.ome.zarr"
    if not path.exists():
        convert(args.data / "signal", path, voxel_size_um=SPACING)
    image = open_image(path)
    stats = intensity_stats(image, tissue=image_tissue(image))
    held_out, candidates = held_out_split(annotations(args.data / "cell_classification.xml"), ANNOTATED_ROI)
    if max(args.clicks) > len(candidates):
        sys.exit(f"--clicks {max(args.clicks)}: only {len(candidates)} annotated somas lie {GAP_UM:g} µm from the window")
    rows = []
    if not args.no_baseline:
        rows.append({"condition": "no fine-tuning", "clicks": 0,
                     **score(load(DetectParams()), image, stats, ANNOTATED_ROI, held_out),
                     "trainable": 0, "file_kB": None, "train_s": 0.0})
        print(rows[-1], flush=True)
    for n in args.clicks:
        points = args.out / f"clicks_{n}.csv"
        pd.DataFrame(candidates[:n], columns=["z_um", "y_um", "x_um"]).to_csv(points, index=False)
        for mode in args.modes:
            out = args.out / f"{mode}_{n}.pt"
            started = time.perf_counter()
            summary = finetune(path, points, out, FinetuneConfig(mode=mode, steps=args.steps))
            model = load(DetectParams(adapter=str(out)) if mode == "lora" else DetectParams(model=str(out)))
            rows.append({"condition": "LoRA (q, v; rank 4) + head + norms" if mode == "lora" else "full fine-tuning",
                         "clicks": n, **score(model, image, stats, ANNOTATED_ROI, held_out),
                         "trainable": summary["trainable_parameters"],
                         "file_kB": round(summary["file_bytes"] / 1024, 1), "train_s": summary["train_seconds"]})
            print(rows[-1], f"(wall {time.perf_counter() - started:.0f} s)", flush=True)
    print(f"\ncellfinder planes: {len(held_out)} held-out somas in the window, clicks from {len(candidates)} others, "
          f"{args.steps} steps")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
