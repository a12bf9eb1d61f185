"""Does a per-cell score separate microglia from the bright things that are not (puncta, macrophages)?

Usage:
    python bench/confidence.py [--split val] [--regimes confocal dim bright] [--data ../shared/data/morphomics_kxa]
                               [--out /tmp/traice-confidence]

Data: the fields of view of the real tracings in ``--split`` (``val`` to design,
``test`` to report; never the training fields), each rendered in every regime
of ``--regimes`` with the renderer's distractors (autofluorescent puncta, some
soma-sized; bright process-free perivascular macrophages; faint vessels) and
render seed 0. The whole workflow runs once over all of them with the default
config (one Snakemake call, 2 cores).

Each detected cell is matched to the traced somas (Hungarian, 6 µm): a match
is a microglia, a detection left over is not (a distractor or a false split).
For each score the table gives the ROC AUC of telling the two apart (1 =
perfect, 0.5 = chance), and for each yes/no flag the share of non-microglia
it removes and of microglia it keeps.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.core.metrics import match_points  # noqa: E402
from traice.synth import truth_path, write_synthetic  # noqa: E402
from traice.synth.regimes import regime_params  # noqa: E402
from traice.synth.traces import field_split, read_field, render_traces, trace_fields  # noqa: E402

SCORES = ["score", "microglia_score", "total_length_um", "n_primary_processes", "cell_volume_um3", "soma_volume_um3"]
FLAGS = ["has_processes", "microglia_score>=0.5"]  # a cell kept where the flag is True


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC: the chance that a random positive scores above a random negative (ties count half)."""
    if not len(positive) or not len(negative):
        return float("nan")
    diff = np.asarray(positive, float)[:, None] - np.asarray(negative, float)[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def render(args) -> dict[str, str]:
    """Write every (field, regime) volume once; returns the workflow's samples."""
    samples = {}
    for folder in field_split(trace_fields(args.data))[args.split]:
        trees = read_field(folder)
        for regime in args.regimes:
            name = f"{regime}_{folder.name}"[:80]
            path = Path(args.out) / "inputs" / f"{name}.ome.zarr"
            if not path.exists():
                write_synthetic(render_traces(trees, regime_params(regime, seed=0)), path)
            samples[name] = str(path)
    return samples


def labelled_cells(results: Path, samples: dict[str, str]) -> pd.DataFrame:
    """Every detected cell's morphology row with ``microglia`` (matched to a traced soma) and ``regime``."""
    parts = []
    for name, image in samples.items():
        morph = pd.read_parquet(results / name / "morphology.parquet")
        truth = pd.read_parquet(truth_path(image))
        match = match_points(morph[["z_um", "y_um", "x_um"]].to_numpy(), truth[["z_um", "y_um", "x_um"]].to_numpy())
        cells = pd.read_parquet(results / name / "cells.parquet")[["cell_id", "score"]]
        morph = morph.merge(cells, on="cell_id")
        morph["microglia"] = False
        morph.loc[morph.index[match.pairs[:, 0]], "microglia"] = True
        parts.append(morph.assign(regime=name.split("_", 1)[0]))
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--regimes", nargs="+", default=["confocal", "dim", "bright"])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "morphomics_kxa"))
    ap.add_argument("--out", default="/tmp/traice-confidence")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    samples = render(args)
    results = Path(args.out) / "results"
    config = Path(args.out) / "config.yaml"
    config.write_text(yaml.safe_dump({"samples": samples, "results": str(results)}))
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--configfile", str(config),
                    "--rerun-incomplete", "--quiet", "rules", "--snakefile", str(ROOT / "Snakefile"),
                    "--directory", str(ROOT)], check=True)
    cells = labelled_cells(results, samples)
    cells.to_parquet(Path(args.out) / f"cells_{args.split}.parquet")
    print(f"\nsplit {args.split}: {len(samples)} volumes; detections matched to a traced soma = microglia")
    report(cells)


def report(cells: pd.DataFrame) -> None:
    """Print the AUC of each score and what each flag removes and keeps, per regime and for all cells."""
    cells = cells.assign(**{"microglia_score>=0.5": cells["microglia_score"] >= 0.5})
    header = f"{'regime':<9} {'microglia':>9} {'other':>5} " + " ".join(f"{'AUC ' + s[:14]:>18}" for s in SCORES)
    print(header)
    for regime, part in [*cells.groupby("regime", sort=False), ("all", cells)]:
        pos, neg = part[part["microglia"]], part[~part["microglia"]]
        print(f"{regime:<9} {len(pos):>9} {len(neg):>5} " +
              " ".join(f"{auc(pos[s], neg[s]) if s in part else float('nan'):>18.3f}" for s in SCORES))
    print(f"\n{'regime':<9} {'flag':<20} {'other removed':>13} {'microglia kept':>14}")
    for regime, part in [*cells.groupby("regime", sort=False), ("all", cells)]:
        pos, neg = part[part["microglia"]], part[~part["microglia"]]
        for flag in FLAGS:
            removed = (~neg[flag].astype(bool)).mean() if len(neg) else float("nan")
            print(f"{regime:<9} {flag:<20} {removed:>13.0%} {pos[flag].astype(bool).mean():>14.0%}")


if __name__ == "__main__":
    main()
