"""Soma F1 and per-cell branch Dice of a finished run against the synthetic ground truth (methods from its run.json).

Usage:
    python bench/baseline.py [RESULTS_DIR]      # default: results/demo (runs `make demo` first if missing)

Prints a table. Soma matching: Hungarian, within 6 µm. Branch Dice: per true
cell, Dice of the matched predicted cell's mask with the true cell's mask (soma
+ processes); unmatched true cells count as 0 in "Dice (all true cells)".
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.stages.evaluate import evaluate_run  # noqa: E402


def main() -> None:
    results = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "results" / "demo"
    if not (results / "run.json").exists():
        t = time.time()
        subprocess.run(["make", "demo"], cwd=ROOT, check=True)
        print(f"(ran make demo in {time.time() - t:.0f} s)")
    scores = evaluate_run(results)
    config = json.loads((results / "run.json").read_text())["config"]
    methods = f"detect {config['detect']['method']}, segment {config['segment']['method']}"
    width = max(len(k) for k in scores)
    print(f"{'metric':<{width}}  {methods}")
    print(f"{'-' * width}  {'-' * len(methods)}")
    for k, v in scores.items():
        print(f"{k:<{width}}  {v:.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
