"""The pipeline on rendered real microglia tracings: held-out fields of ../shared/data/morphomics_kxa.

Usage:
    python bench/traces.py [--split test] [--out /tmp/traice-traces] [--data ../shared/data/morphomics_kxa]

Renders each field of the split (traice.synth.traces: real arbors and soma
positions, the synthetic microscope model), runs the workflow on them as
ordinary samples and prints soma precision/recall/F1 (Hungarian, 6 µm) and
per-cell Dice against the rendered truth, per field and overall.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from run_config import run_config  # noqa: E402

from traice.stages.evaluate import evaluate_run  # noqa: E402
from traice.synth import write_synthetic  # noqa: E402
from traice.synth.traces import field_split, read_field, render_traces, trace_fields  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "morphomics_kxa"))
    ap.add_argument("--out", default="/tmp/traice-traces")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"no tracings at {args.data}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fields = field_split(trace_fields(args.data))[args.split]
    samples = {}
    for i, folder in enumerate(fields):
        name = f"{args.split}{i}"
        image = out / f"{name}.ome.zarr"
        if not image.exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                write_synthetic(render_traces(read_field(folder)), image)
        samples[name] = str(image)
    run_config({"samples": samples, "results": str(out / "results")}, out, args.cores, target="all")

    rows = {name: evaluate_run(out / "results" / name, image) for name, image in samples.items()}
    keys = list(next(iter(rows.values())))
    print(f"{'field':<8} " + " ".join(f"{k[:14]:>14}" for k in keys))
    for name, r in rows.items():
        print(f"{name:<8} " + " ".join(f"{r[k]:>14.3f}" if isinstance(r[k], float) else f"{r[k]:>14}" for k in keys))
    n_true = sum(r["cells (true)"] for r in rows.values())
    tp_recall = sum(r["soma recall"] * r["cells (true)"] for r in rows.values())
    n_pred = sum(r["cells (detected)"] for r in rows.values())
    tp_prec = sum(r["soma precision"] * r["cells (detected)"] for r in rows.values())
    f1 = 2 * tp_recall / (n_true + n_pred) if n_true + n_pred else 1.0
    dice = sum(r["branch Dice (all true cells)"] * r["cells (true)"] for r in rows.values()) / max(n_true, 1)
    print(f"overall: soma precision {tp_prec / max(n_pred, 1):.3f}, recall {tp_recall / max(n_true, 1):.3f}, "
          f"F1 {f1:.3f}; branch Dice over all true cells {dice:.3f} ({n_true} cells, {len(rows)} fields)")


if __name__ == "__main__":
    main()
