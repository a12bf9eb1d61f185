"""A new microscope from a few clicked somas: no fine-tuning, LoRA adapters and full fine-tuning.

Usage:
    python bench/finetune.py [--clicks 5 10 20] [--modes lora full] [--steps 150] [--norms | --no-norms]
                             [--no-baseline] [--out /tmp/traice-finetune]

Domain: the ``lightsheet`` imaging regime (traice.synth.regimes: 2 × 1 × 1 µm
voxels, a broad axial PSF, low signal over a high background), far from the
confocal-like fields the shipped one-pass network was trained on. One field
(seed 101, 48 × 400 × 400 µm, 30 cells) gives the clicks, as a user would make
them: every soma in a slab of the field (all of z and y, x from 0 to halfway
between the N-th and the (N+1)-th soma along x), with that slab given as the
box where the clicks are complete (traice.training.finetune). Two other
fields (seeds 201 and 202) are held out: soma precision, recall and F1 against
all their somas (Hungarian, 6 µm), detected as the workflow detects
(traice.stages.detect.network, the default settings, model input resampled
onto the networks' grid).

For each condition the table gives the F1 on the held-out fields, the
trainable parameters, the written file's size and the training time on this
machine's CPU threads (setup, reading the clicks' neighbourhoods, not included).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.core.metrics import match_points  # noqa: E402
from traice.stages.detect.network import detect_traice, load  # noqa: E402
from traice.stages.detect.params import DetectParams  # noqa: E402
from traice.stages.plan import intensity_stats  # noqa: E402
from traice.io.ome import open_image  # noqa: E402
from traice.synth import synthesize, truth_path, write_synthetic  # noqa: E402
from traice.synth.regimes import regime_params  # noqa: E402
from traice.training.finetune import FinetuneConfig, finetune  # noqa: E402

SHAPE = (24, 400, 400)   # voxels at 2 x 1 x 1 µm
CELLS = 30
TRAIN_SEED, TEST_SEEDS = 101, (201, 202)


def field(out: Path, seed: int, regime: str) -> Path:
    path = out / f"{regime}_{seed}.ome.zarr"
    if not path.exists():
        write_synthetic(synthesize(regime_params(regime, shape=SHAPE, cells=CELLS, seed=seed)), path)
    return path


def score(model, fields: list[Path]) -> dict:
    """Soma precision, recall and F1 over ``fields`` together."""
    tp = n_pred = n_true = 0
    for path in fields:
        image = open_image(path)
        found = detect_traice(image.read(image.bounds), image.spacing, intensity_stats(image), DetectParams(), model)
        truth = pd.read_parquet(truth_path(path))
        match = match_points(found[["z", "y", "x"]].to_numpy(float) * np.asarray(image.spacing),
                             truth[["z_um", "y_um", "x_um"]].to_numpy())
        tp, n_pred, n_true = tp + len(match.pairs), n_pred + match.n_pred, n_true + match.n_true
    precision, recall = tp / max(n_pred, 1), tp / max(n_true, 1)
    return {"precision": precision, "recall": recall, "F1": 2 * precision * recall / max(precision + recall, 1e-9)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clicks", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--modes", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--regime", default="lightsheet")
    ap.add_argument("--norms", action=argparse.BooleanOptionalAction, default=True,
                    help="lora: also train the normalisation layers (default: on, as traice finetune)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the row without fine-tuning")
    ap.add_argument("--out", type=Path, default=Path("/tmp/traice-finetune"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train = field(args.out, TRAIN_SEED, args.regime)
    tests = [field(args.out, s, args.regime) for s in TEST_SEEDS]
    truth = pd.read_parquet(truth_path(train)).sort_values("x_um")
    extent = np.asarray(SHAPE) * np.asarray(regime_params(args.regime).spacing)
    rows = []
    if not args.no_baseline:
        rows.append({"condition": "no fine-tuning", "clicks": 0, **score(load(DetectParams()), tests), "trainable": 0, "file_kB": None,
                     "train_s": 0.0})
        print(rows[-1], flush=True)
    for n in args.clicks:
        points = args.out / f"clicks_{n}.csv"
        truth.head(n)[["z_um", "y_um", "x_um"]].to_csv(points, index=False)
        xs = truth["x_um"].to_numpy()
        box = [[0.0, 0.0, 0.0], [extent[0], extent[1], (xs[n - 1] + xs[n]) / 2 if n < len(xs) else extent[2]]]
        for mode in args.modes:
            norms = args.norms and mode == "lora"
            out = args.out / f"{mode}{'_norms' if norms else ''}_{n}.pt"
            started = time.perf_counter()
            summary = finetune(train, points, out, FinetuneConfig(mode=mode, steps=args.steps, norms=norms), complete_um=box)
            model = load(DetectParams(adapter=str(out)) if mode == "lora" else DetectParams(model=str(out)))
            rows.append({"condition": (f"LoRA (q, v; rank 4) + head{' + norms' if norms else ''}" if mode == "lora"
                                       else "full fine-tuning"),
                         "clicks": n, **score(model, tests), "trainable": summary["trainable_parameters"],
                         "file_kB": round(summary["file_bytes"] / 1024, 1), "train_s": summary["train_seconds"]})
            print(rows[-1], f"(wall {time.perf_counter() - started:.0f} s)", flush=True)
    table = pd.DataFrame(rows)
    print(f"\nregime {args.regime}: train field seed {TRAIN_SEED}, held-out seeds {TEST_SEEDS}, {args.steps} steps")
    print(table.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
