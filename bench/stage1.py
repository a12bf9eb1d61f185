"""Stage-1 soma detection: traice (the shipped model, or --model) vs the classical baseline.

Usage:
    python bench/stage1.py [--split test] [--data ../shared/data/morphomics_kxa] [--model PATH] [--no-demo]

Data: the held-out fields of view of the real tracings (traice.synth.traces.field_split,
rendered with seed 0; training never saw them) and the demo volume (config/config.yaml's
synthetic sample). Each volume is detected whole, as one tile (the workflow's tiles
give the same result: normalisation uses whole-image statistics and the owner rule
keeps each soma once). Matching: Hungarian within 6 µm. Prints one row per volume and
method, then the totals per dataset.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.stages.detect import DetectParams, detect_classical, detect_traice, load_detector  # noqa: E402
from traice.core.metrics import match_points  # noqa: E402
from traice.core.intensity import robust_stats  # noqa: E402
from traice.synth import SynthParams, render_swc, synthesize  # noqa: E402
from traice.synth.traces import field_split, trace_fields  # noqa: E402


def volumes(args):
    """(dataset, name, SyntheticBrain) for every volume of the benchmark."""
    if Path(args.data).exists():
        for i, folder in enumerate(field_split(trace_fields(args.data))[args.split]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield "traces " + args.split, folder.name, render_swc(folder, SynthParams(seed=0))
    else:
        print(f"no tracings at {args.data}: rendered fields skipped")
    if not args.no_demo:
        demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["samples"]["demo"]["synthetic"]
        yield "demo", "demo", synthesize(SynthParams(seed=demo["seed"], shape=tuple(demo["shape"]), cells=demo["cells"]))


def add_volume_arguments(ap: argparse.ArgumentParser) -> None:
    """The options :func:`volumes` reads (and ``--device``), shared by the stage benches."""
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "morphomics_kxa"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-demo", action="store_true")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_volume_arguments(ap)
    ap.add_argument("--model", help="weights file (default: the shipped stage-1 weights)")
    args = ap.parse_args()
    classical = DetectParams(method="classical")
    traice = DetectParams(method="traice", model=args.model, device=args.device)
    model = load_detector(traice)
    totals: dict[tuple[str, str], np.ndarray] = {}
    print(f"{'dataset':<12} {'volume':<44} {'method':<9} {'true':>5} {'found':>5} {'P':>6} {'R':>6} {'F1':>6} {'s':>7}")
    for dataset, name, brain in volumes(args):
        spacing = brain.params.spacing
        stats = robust_stats(brain.image[:, ::2, ::2])
        truth = brain.truth[["z_um", "y_um", "x_um"]].to_numpy()
        for method, params in (("classical", classical), ("traice", traice)):
            t0 = time.time()
            if method == "classical":
                found = detect_classical(brain.image, spacing, stats, params)
            else:
                found = detect_traice(brain.image, spacing, stats, params, model)
            seconds = time.time() - t0
            m = match_points(found[["z", "y", "x"]].to_numpy(float) * np.asarray(spacing), truth, 6.0)
            tp = len(m.pairs)
            totals.setdefault((dataset, method), np.zeros(3))
            totals[(dataset, method)] += [tp, m.n_pred, m.n_true]
            print(f"{dataset:<12} {name[:44]:<44} {method:<9} {m.n_true:>5} {m.n_pred:>5} "
                  f"{m.precision:>6.3f} {m.recall:>6.3f} {m.f1:>6.3f} {seconds:>7.1f}", flush=True)
    print()
    print(f"{'dataset':<12} {'method':<9} {'true':>5} {'found':>5} {'P':>6} {'R':>6} {'F1':>6}")
    for (dataset, method), (tp, n_pred, n_true) in totals.items():
        p, r = tp / max(n_pred, 1), tp / max(n_true, 1)
        print(f"{dataset:<12} {method:<9} {int(n_true):>5} {int(n_pred):>5} {p:>6.3f} {r:>6.3f} {2 * tp / max(n_pred + n_true, 1):>6.3f}")
    if args.model is None:
        print(f"model: shipped weights; device {dataclasses.asdict(traice)['device']}")


if __name__ == "__main__":
    main()
