"""Does denoising pretraining help stage 1 learn from few labels? The same supervised budget, from scratch
and from the pretrained weights.

Usage:
    python bench/pretrain.py [--data ../shared/data/morphomics_kxa] [--pretrain-steps 500] [--steps 500]
                             [--labelled 2] [--out /tmp/traice-pretrain] [--cache DIR]

Data (the fixed split of the real tracings, traice.synth.traces.field_split):

- unlabelled: every *train* field, rendered twice (seed 0 in the ``confocal`` regime, seed 1 in a
  ``random`` one); pretraining sees their images only;
- labelled: the first ``--labelled`` train fields (seed 0, ``confocal``), with their soma masks;
- validation (pretraining's loss, stage 1's Dice, for the best checkpoint only): the *val* fields;
- held out: the *test* fields rendered in the ``confocal`` regime with seed 0, detected whole with the
  default detection settings and matched to the traced somas (Hungarian, 6 µm).

Conditions: stage 1 (task ``soma``, window 16 x 128 x 128, the S network) trained for ``--steps`` from
random weights and from the pretrained ones (``init``), each run's final weights scored. Pretraining
(task ``pretrain``) runs ``--pretrain-steps`` first; its time is reported apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.core.intensity import robust_stats  # noqa: E402
from traice.core.metrics import match_points  # noqa: E402
from traice.nn.checkpoints import load_model  # noqa: E402
from traice.stages.detect.network import detect_traice  # noqa: E402
from traice.stages.detect.params import DetectParams  # noqa: E402
from traice.synth import render_swc  # noqa: E402
from traice.synth.traces import field_split, trace_fields  # noqa: E402
from traice.training.data import source_params  # noqa: E402
from traice.training.loop import train  # noqa: E402
from traice.training.recipes import TrainConfig  # noqa: E402

WINDOW = (16, 128, 128)


def traces(folder: Path, seed: int, regime: str) -> tuple[str, dict]:
    return ("traces", {"folder": str(folder), "seed": seed, "regime": regime})


def score(model_path: Path, fields: list[Path]) -> dict:
    """Soma precision, recall and F1 over the held-out fields together."""
    model = load_model(model_path)
    tp = n_pred = n_true = 0
    for folder in fields:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            brain = render_swc(folder, source_params({"seed": 0, "regime": "confocal"}))
        found = detect_traice(brain.image, brain.params.spacing, robust_stats(brain.image[:, ::2, ::2]),
                              DetectParams(), model)
        match = match_points(found[["z", "y", "x"]].to_numpy(float) * np.asarray(brain.params.spacing),
                             brain.truth[["z_um", "y_um", "x_um"]].to_numpy(), 6.0)
        tp, n_pred, n_true = tp + len(match.pairs), n_pred + match.n_pred, n_true + match.n_true
    precision, recall = tp / max(n_pred, 1), tp / max(n_true, 1)
    return {"somas": n_true, "found": n_pred, "precision": precision, "recall": recall,
            "F1": 2 * tp / max(n_pred + n_true, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "morphomics_kxa")
    ap.add_argument("--pretrain-steps", type=int, default=500)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--labelled", type=int, default=2, help="labelled training fields")
    ap.add_argument("--out", type=Path, default=Path("/tmp/traice-pretrain"))
    ap.add_argument("--cache", type=Path, help="rendered training volumes (default OUT/cache)")
    args = ap.parse_args()
    split = field_split(trace_fields(args.data))
    cache = args.cache or args.out / "cache"
    unlabelled = [traces(f, s, r) for f in split["train"] for s, r in ((0, "confocal"), (1, "random"))]
    labelled = [traces(f, 0, "confocal") for f in split["train"][: args.labelled]]
    val = [traces(f, 0, "confocal") for f in split["val"]]
    base = TrainConfig(task="soma", window=WINDOW, steps=args.steps, eval_every=max(args.steps // 5, 1),
                       val_windows=16, warmup=50)

    pre = train(dataclasses.replace(base, task="pretrain", steps=args.pretrain_steps,
                                    eval_every=max(args.pretrain_steps // 5, 1)),
                {"train": unlabelled, "val": val}, args.out / "pretrain", cache)
    rows = []
    for name, init in (("from scratch", None), ("from pretrained", str(args.out / "pretrain" / "model.pt"))):
        run = args.out / name.replace(" ", "_")
        summary = train(dataclasses.replace(base, init=init), {"train": labelled, "val": val}, run, cache)
        metrics = pd.read_csv(run / "metrics.csv")
        rows.append({"stage 1": name, "labelled fields": args.labelled, "steps": args.steps,
                     "val Dice (last)": float(metrics["val_dice"].iloc[-1]),
                     **score(run / "model.pt", split["test"]), "train s": summary["train_seconds"]})
        print(rows[-1], flush=True)
    print(f"\npretraining: {args.pretrain_steps} steps on {len(unlabelled)} unlabelled renderings, "
          f"{pre['train_seconds']:.0f} s; {pre['device_name']}")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))
    (args.out / "results.json").write_text(json.dumps({"pretrain": pre, "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
