"""What tells a false soma detection from a true one: features of each detection, true against false.

Usage:
    python bench/false_somas.py [--split val] [--regime confocal] [--data ../shared/data/morphomics_kxa]
                                [--synthetic N [--scale 0.8] [--photons 117]] [--model WEIGHTS.pt]
                                [--out detections.parquet]

Renders the fields of one split of the traced data (render seed 0), runs the
shipped one-pass network over each whole field and detects somas as the
workflow does; each detection is true when it matches a true soma (Hungarian,
6 µm). ``--synthetic N`` scores N fields of the synthetic generator instead
(seeds 2000.., 32 × 512 × 512 voxels, 33 cells; somas of 3-6 µm semi-axes,
where the traced renderings' are all about 5 µm), rendered at ``--scale`` times the
networks' voxel size (the same scene in µm; the generator's photons are per voxel, so finer voxels collect more
light per µm³) and with ``--photons`` instead of the regime's signal. For each detection:

- ``score``: its peak soma probability;
- ``radius_um``: the equivalent radius of its soma region (what the size
  filter of ``traice.stages.detect.somas`` reads);
- ``elongation``: sqrt of the largest over the smallest eigenvalue of the
  covariance (µm) of its connected soma-probability component (p > 0.5);
- ``fg_shell``: the mean foreground probability 8-16 µm from it (processes);
- ``processes``: the share of the voxels 2-8 µm outside its soma component
  whose foreground probability is above the segment step's 0.1 (where the
  processes leave a soma; a blob without processes has none: the detect step drops a detection with less than
  ``detect.min_processes``, traice.stages.detect.processes; here every detection is scored);
- ``contrast``: its mean intensity within 3 µm, above the image median, in
  noise sigmas;
- ``on_cell``: whether a true cell's soma or process lies within 2 µm of it
  (a false one there is part of a real cell; elsewhere, a distractor).

Prints the 10th, 50th and 90th percentile of each feature for true and false
detections. Choose any filter on --split val, never on test.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.core.geometry import Box, distance_um  # noqa: E402
from traice.core.grid import MODEL_SPACING_UM  # noqa: E402
from traice.core.metrics import match_points  # noqa: E402
from traice.io.ome import ArrayImage  # noqa: E402
from traice.nn.checkpoints import load_model  # noqa: E402
from traice.stages.detect import DetectParams  # noqa: E402
from traice.stages.detect.network import detect_traice_maps  # noqa: E402
from traice.stages.detect.processes import FOREGROUND, SHELL_UM as PROCESS_SHELL_UM, process_share  # noqa: E402
from traice.stages.plan import intensity_stats  # noqa: E402
from traice.synth import synthesize  # noqa: E402
from traice.synth.regimes import regime_params  # noqa: E402
from traice.synth.traces import field_split, render_swc, trace_fields  # noqa: E402
from traice.weights import shipped_weights  # noqa: E402

SHELL_UM = (8.0, 16.0)
CORE_UM = 3.0


def elongation(component: np.ndarray, spacing) -> float:
    """sqrt(largest / smallest covariance eigenvalue) of a mask's voxel positions in µm (NaN below 4 voxels)."""
    points = np.argwhere(component) * np.asarray(spacing, dtype=float)
    if len(points) < 4:
        return float("nan")
    eig = np.linalg.eigvalsh(np.cov(points.T))
    return float(np.sqrt(eig[-1] / max(eig[0], 1e-9)))


ON_CELL_UM = 2.0
FAINT_SIGMAS = 3.0


def detection_features(image: np.ndarray, maps: np.ndarray, found: pd.DataFrame, spacing, stats: dict,
                       cells: np.ndarray) -> pd.DataFrame:
    """One row of features per detection (columns as the module docstring); ``cells`` the true cell labels."""
    components, _ = ndimage.label(maps[0] > DetectParams.probability)
    bounds = Box.from_shape(image.shape)
    processes = process_share(maps[0], maps[1], found[["z", "y", "x"]].to_numpy(), spacing, DetectParams.probability)
    rows = []
    for det, share in zip(found.itertuples(), processes):
        centre = (det.z, det.y, det.x)
        box = Box.around(centre, tuple(int(np.ceil(SHELL_UM[1] / s)) for s in spacing)).intersect(bounds)
        dist = distance_um(box.shape, tuple(c - a for c, a in zip(centre, box.start)), spacing)
        shell = (dist > SHELL_UM[0]) & (dist <= SHELL_UM[1])
        label = components[tuple(int(round(c)) for c in centre)]
        rows.append({
            "score": det.score,
            "radius_um": float(np.cbrt(3 * det.volume_um3 / (4 * np.pi))),
            "elongation": elongation(components[box.slices] == label, spacing) if label else float("nan"),
            "fg_shell": float(maps[1][box.slices][shell].mean()),
            "processes": share,
            "contrast": float((image[box.slices][dist <= CORE_UM].mean() - stats["median"]) / stats["sigma"]),
            "on_cell": bool((cells[box.slices][dist <= ON_CELL_UM] > 0).any()),
        })
    return pd.DataFrame(rows)


def volumes(args):
    """(name, rendered SyntheticBrain) of every field the bench scores."""
    if args.synthetic:
        spacing = tuple(s * args.scale for s in MODEL_SPACING_UM)
        shape = tuple(int(round(n / args.scale)) for n in (32, 512, 512))
        light = {} if args.photons is None else {"photons": args.photons}
        for seed in range(2000, 2000 + args.synthetic):
            yield f"synthetic seed {seed}", synthesize(regime_params(args.regime, seed=seed, shape=shape, cells=33,
                                                                     spacing=spacing, **light))
        return
    if not Path(args.data).exists():
        sys.exit(f"no tracings at {args.data}")
    for folder in field_split(trace_fields(args.data))[args.split]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SWC files read_field skips
            yield folder.name, render_swc(folder, regime_params(args.regime, seed=0,
                                                                traced_soma_radius_um=args.traced_soma_radius))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--regime", default="confocal")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "morphomics_kxa"))
    ap.add_argument("--synthetic", type=int, default=0, help="score this many synthetic generator fields instead")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="synthetic fields: voxels this many times the networks' grid, the same scene in µm")
    ap.add_argument("--photons", type=float, help="synthetic fields: the regime's signal in photons, instead of its own")
    ap.add_argument("--out", help="also write the per-detection rows to this parquet file")
    ap.add_argument("--model", help="one-pass weights (default: the shipped ones)")
    ap.add_argument("--traced-soma-radius", type=float, nargs=2, metavar=("LOW", "HIGH"),
                    help="draw each traced soma's radius (µm) from [LOW, HIGH] (default: the trace's, at least 5)")
    args = ap.parse_args()
    if args.traced_soma_radius is not None:
        args.traced_soma_radius = tuple(args.traced_soma_radius)
    model = load_model(args.model or shipped_weights("cells"))
    tables, somas = [], 0
    for name, brain in volumes(args):
        spacing = np.asarray(brain.params.spacing)
        stats = intensity_stats(ArrayImage(brain.image, tuple(spacing)))  # as the workflow's plan measures them
        found, maps = detect_traice_maps(brain.image, spacing, stats, DetectParams(min_processes=0), model)  # all
        somas += len(brain.truth)
        found = found.reset_index(drop=True)
        match = match_points(found[["z", "y", "x"]].to_numpy() * spacing, brain.truth[["z", "y", "x"]].to_numpy() * spacing)
        true = np.zeros(len(found), bool)
        true[[p for p, _ in match.pairs]] = True
        tables.append(detection_features(brain.image, maps, found, spacing, stats, brain.cells).assign(field=name, true=true))
        print(f"{name[:40]:<40} {true.sum()} true, {(~true).sum()} false detections", flush=True)
    table = pd.concat(tables, ignore_index=True)
    if args.out:
        table.to_parquet(args.out)
    features = ["score", "radius_um", "elongation", "fg_shell", "processes", "contrast"]
    print(f"\n{'feature':<11} {'detections':<11} {'n':>4} {'p10':>8} {'p50':>8} {'p90':>8}")
    for feature in features:
        for name, part in (("true", table[table["true"]]), ("false", table[~table["true"]])):
            q = part[feature].quantile([0.1, 0.5, 0.9]).to_numpy()
            print(f"{feature:<11} {name:<11} {len(part):>4} {q[0]:>8.3f} {q[1]:>8.3f} {q[2]:>8.3f}")
    false = table[~table["true"]]
    print(f"\ndetections with processes (share of the {PROCESS_SHELL_UM[0]:g}-{PROCESS_SHELL_UM[1]:g} µm shell "
          f"above p {FOREGROUND:g}) below detect.min_processes, and the soma F1 without them ({somas} true somas):")
    for cut in (0.0, 0.002, 0.005, 0.01):
        below = table["processes"] < cut  # NaN: kept, as the detect step keeps it
        kept = table[~below]
        f1 = 2 * kept["true"].sum() / (somas + len(kept))
        print(f"  {cut:<6g} true {int((below & table['true']).sum())} of {int(table['true'].sum())}, "
              f"false {int((below & ~table['true']).sum())} of {len(false)}: F1 {f1:.3f}")
    print(f"\nfalse detections on a true cell (within {ON_CELL_UM:g} µm of its soma or processes): "
          f"{int(false['on_cell'].sum())} of {len(false)}; elsewhere (distractors): {int((~false['on_cell']).sum())}")
    print(f"false detections fainter than {FAINT_SIGMAS:g} noise sigmas (contrast): {int((false['contrast'] < FAINT_SIGMAS).sum())} "
          f"of {len(false)}; true ones: {int((table[table['true']]['contrast'] < FAINT_SIGMAS).sum())} of {int(table['true'].sum())}")


if __name__ == "__main__":
    main()
