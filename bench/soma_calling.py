"""Soma calling from the one-pass network's soma probability: threshold and hysteresis, scored per condition.

Usage:
    python bench/soma_calling.py [--split val] [--regimes confocal dim] [--synthetic 4] [--scales 1 2 0.8]
                                 [--probability 0.5] [--low none 0.3 0.2] [--cache DIR]
                                 [--data ../shared/data/morphomics_kxa] [--no-demo]
                                 [--traced-soma-radius 3 6] [--model A.pt [B.pt ...]] [--mirror none yx]
                                 [--zoom 1 1.25]

Volumes: the traced fields of ``--split`` rendered in each of ``--regimes``
(render seed 0; each soma at the trace's radius, at least 5 µm, or with
``--traced-soma-radius`` drawn from that range, as the issue's regime has
them); ``--synthetic N`` fields of the synthetic generator (its
irregular 3-6 µm somas, some dim, cut by the faces; seeds 2000.. for the val
split, 3000.. for test; 32 × 512 × 512 grid voxels, 33 cells), each
rendered at every voxel size of ``--scales`` (multiples of the networks'
grid, the same scene in µm); with ``--split test`` also the demo volume.
Each volume is rendered once; every network of ``--model`` (default: the
shipped weights) runs once on it (its soma probability, as float16, kept in
``--cache`` when given, keyed by the volume, the weights file and the mirroring), once per setting of
``--mirror`` (``detect.mirror``: its windows also mirrored along those axes, outputs averaged; ``none``,
the default: not mirrored), and once per ``--zoom`` Z (the volume's voxels
declared Z times their size, so that the network sees the tissue magnified Z
times: a 3 µm soma as one of 3Z µm; the somas are called in the declared µm
and matched in the true ones; default 1); each calling rule then runs on the
same map, as the workflow's detect step does (whole-image intensity
statistics as the plan measures them): ``--probability`` is the soma
threshold, ``--low`` the hysteresis floor (``none``: plain threshold).
Matching: Hungarian within 6 µm. Prints one row per volume and rule, then
totals per condition and rule. Choose on ``--split val``, never on test.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo import demo_brain  # noqa: E402
from skimage.filters import apply_hysteresis_threshold  # noqa: E402

from traice.core.grid import MODEL_SPACING_UM  # noqa: E402
from traice.core.metrics import match_points  # noqa: E402
from traice.io.ome import ArrayImage  # noqa: E402
from traice.stages.detect import DetectParams  # noqa: E402
from traice.stages.detect.network import load, network_maps, somas_from_probability  # noqa: E402
from traice.stages.plan import intensity_stats  # noqa: E402
from traice.synth import synthesize  # noqa: E402
from traice.synth.regimes import regime_params  # noqa: E402
from traice.synth.traces import field_split, render_swc, trace_fields  # noqa: E402
from traice.weights import shipped_weights  # noqa: E402

SYNTHETIC_SEEDS = {"train": 1000, "val": 2000, "test": 3000}
SYNTHETIC_SHAPE = (32, 512, 512)
SYNTHETIC_CELLS = 33
RADIUS_BINS_UM = [0.0, 3.5, 4.5, np.inf]
FACE_BINS_UM = [-np.inf, 3.0, np.inf]


def true_somas(brain, pairs) -> pd.DataFrame:
    """One row per true soma: found or not, its radius, its centre's distance (µm) from the nearest z face
    and from the nearest y or x face of the volume."""
    extent = np.asarray(brain.image.shape) * np.asarray(brain.params.spacing)
    centre = brain.truth[["z_um", "y_um", "x_um"]].to_numpy()
    face = np.minimum(centre, extent - centre)
    found_true = np.zeros(len(centre), bool)
    found_true[[t for _, t in pairs]] = True
    return pd.DataFrame({"found": found_true, "radius_um": brain.truth["soma_radius_um"].to_numpy(),
                         "z_face_um": face[:, 0], "yx_face_um": face[:, 1:].min(axis=1)})


def volumes(args):
    """(condition, name, SyntheticBrain) of every volume the bench scores."""
    if Path(args.data).exists():
        for regime in args.regimes:
            for folder in field_split(trace_fields(args.data))[args.split]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # SWC files read_field skips
                    params = regime_params(regime, seed=0, traced_soma_radius_um=args.traced_soma_radius)
                    yield f"traced {regime}", folder.name, render_swc(folder, params)
    else:
        print(f"no tracings at {args.data}: synthetic fields only", file=sys.stderr)
    for seed in range(SYNTHETIC_SEEDS[args.split], SYNTHETIC_SEEDS[args.split] + args.synthetic):
        for scale in args.scales:
            spacing = tuple(s * scale for s in MODEL_SPACING_UM)
            shape = tuple(int(round(n / scale)) for n in SYNTHETIC_SHAPE)
            yield (f"synthetic {scale:g}x", f"seed {seed}",
                   synthesize(regime_params("default", seed=seed, shape=shape, cells=SYNTHETIC_CELLS, spacing=spacing)))
    if args.split == "test" and not args.no_demo:
        yield "demo", "demo", demo_brain()


def soma_probability(brain, model, weights_sha: str, args, zoom: float = 1.0) -> np.ndarray:
    """The network's soma probability over the whole volume seen magnified ``zoom`` times (its voxels declared
    ``zoom`` times their size), rounded to float16 (so that a map read from ``--cache``, keyed by the volume,
    ``weights_sha``, the weights file's SHA-1 and any mirror axes, and the zoom, scores as the one just
    computed)."""
    spacing = tuple(s * zoom for s in brain.params.spacing)
    key = hashlib.sha1(repr((brain.image.shape, spacing, float(brain.image.sum()), weights_sha)).encode()).hexdigest()[:16]
    cached = Path(args.cache) / f"{key}.npy" if args.cache else None
    if cached is not None and cached.exists():
        return np.load(cached).astype(np.float32)
    stats = intensity_stats(ArrayImage(brain.image, spacing))
    prob = network_maps(brain.image, spacing, stats, DetectParams(device=args.device), model)[0].astype(np.float16)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached.with_suffix(".tmp.npy"), prob)
        cached.with_suffix(".tmp.npy").rename(cached)
    return prob.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "morphomics_kxa"))
    ap.add_argument("--regimes", nargs="*", default=["confocal", "dim"])
    ap.add_argument("--synthetic", type=int, default=4, help="synthetic generator fields")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 0.8],
                    help="voxel sizes of the synthetic fields, as multiples of the networks' grid")
    ap.add_argument("--probability", type=float, nargs="+", default=[DetectParams.probability])
    ap.add_argument("--low", nargs="+", default=["none", "0.3", "0.2"], help="hysteresis floors (none: off)")
    ap.add_argument("--model", nargs="+", help="one-pass weights, one or more (default: the shipped ones)")
    ap.add_argument("--mirror", nargs="+", default=["none"],
                    help="detect.mirror settings to run each network with (none: not mirrored)")
    ap.add_argument("--traced-soma-radius", type=float, nargs=2, metavar=("LOW", "HIGH"),
                    help="draw each traced soma's radius (µm) from [LOW, HIGH] (default: the trace's, at least 5)")
    ap.add_argument("--zoom", type=float, nargs="+", default=[1.0],
                    help="magnifications to run each network at (the voxels declared this many times their size)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cache", help="folder for the soma probability maps (reused across runs)")
    ap.add_argument("--no-demo", action="store_true")
    args = ap.parse_args()
    if args.traced_soma_radius is not None:
        args.traced_soma_radius = tuple(args.traced_soma_radius)
    models = {}
    mirrors = ["" if m == "none" else m for m in args.mirror]
    for weights in args.model or [str(shipped_weights("cells"))]:
        name = Path(weights).stem if len(args.model or []) > 1 else ""
        sha = hashlib.sha1(Path(weights).read_bytes()).hexdigest()
        for mirror in mirrors:
            label = f"{name} mirror {mirror}".strip() if mirror else name
            if label in models:
                sys.exit(f"two --model files are named {name}: the rows tell models apart by file name")
            models[label] = (weights, load(DetectParams(model=weights, mirror=mirror)),
                             sha + (f" mirror {mirror}" if mirror else ""))
    rules = [(p, None if low == "none" else float(low)) for p in args.probability for low in args.low]
    totals: dict[tuple[str, str], np.ndarray] = {}
    somas = []
    print(f"{'condition':<32} {'volume':<36} {'rule':<14} {'true':>5} {'found':>5} {'P':>6} {'R':>6} {'F1':>6} {'s':>6}")
    for volume_condition, name, brain in volumes(args):
        spacing = np.asarray(brain.params.spacing)
        truth = brain.truth[["z_um", "y_um", "x_um"]].to_numpy()
        for (label, (weights, model, weights_sha)), zoom in itertools.product(models.items(), args.zoom):
            condition = f"{label} {volume_condition}{f' zoom {zoom:g}' if zoom != 1 else ''}".strip()
            t0 = time.time()
            prob = soma_probability(brain, model, weights_sha, args, zoom)
            seconds = time.time() - t0
            for p, low in rules:
                rule = f"p{p:g}" + (f" low{low:g}" if low is not None else "")
                params = replace(DetectParams(), probability=p)
                mask = None if low is None else apply_hysteresis_threshold(prob, low, p)
                found = somas_from_probability(prob, spacing * zoom, params, mask)
                m = match_points(found[["z", "y", "x"]].to_numpy(float) * spacing, truth, 6.0)
                if (p, low) == rules[0]:
                    somas.append(true_somas(brain, m.pairs).assign(condition=condition))
                totals.setdefault((condition, rule), np.zeros(3))
                totals[(condition, rule)] += [m.tp, m.n_pred, m.n_true]
                print(f"{condition:<32} {name[:36]:<36} {rule:<14} {m.n_true:>5} {m.n_pred:>5} {m.precision:>6.3f} "
                      f"{m.recall:>6.3f} {m.f1:>6.3f} {seconds:>6.0f}", flush=True)
    print()
    print(f"{'condition':<32} {'rule':<14} {'true':>5} {'found':>5} {'FP':>4} {'FN':>4} {'P':>6} {'R':>6} {'F1':>6}")
    for (condition, rule), (tp, n_pred, n_true) in totals.items():
        print(f"{condition:<32} {rule:<14} {int(n_true):>5} {int(n_pred):>5} {int(n_pred - tp):>4} {int(n_true - tp):>4} "
              f"{tp / max(n_pred, 1):>6.3f} {tp / max(n_true, 1):>6.3f} {2 * tp / max(n_pred + n_true, 1):>6.3f}")
    somas = pd.concat(somas, ignore_index=True)
    print(f"\nrecall of rule {rules[0]} by soma radius (µm) and by the centre's distance (µm) from the faces")
    for column, bins in (("radius_um", RADIUS_BINS_UM), ("z_face_um", FACE_BINS_UM), ("yx_face_um", FACE_BINS_UM)):
        by = somas.groupby(["condition", pd.cut(somas[column], bins, right=False)], observed=True, sort=False)["found"]
        print(by.agg(["size", "sum", "mean"]).rename(columns={"size": "true", "sum": "found", "mean": "recall"})
              .round(3).to_string())
    for label, (weights, _, _) in models.items():
        print(f"model{' ' + label if label else ''}: {weights}")


if __name__ == "__main__":
    main()
