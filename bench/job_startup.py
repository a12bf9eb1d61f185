"""What each workflow job pays before it does any work: the imports of its Snakemake script.

Usage:
    python bench/job_startup.py [--repeats 5]

Every rule runs one script of ``scripts/`` in a new Python process, so a job
pays its script's imports once: at whole-brain scale that is thousands of jobs
(docs/scale.md), on a cluster each on a cold node. For each script this takes
its top-level ``import`` statements (parsed, not run: the script itself needs
Snakemake's ``snakemake`` object), runs them in a fresh interpreter
``--repeats`` times and prints the median wall time, with which of the heavy
packages (torch, ome-zarr-py and the dask and xarray it pulls in, matplotlib,
numba) they load.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "ome_zarr", "dask", "xarray", "matplotlib", "numba"]


def script_imports(path: Path) -> str:
    """The top-level import statements of a script, as source."""
    tree = ast.parse(path.read_text())
    return "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))


def time_imports(source: str, repeats: int) -> tuple[float, list[str]]:
    """Median wall time (s) of running ``source`` in a fresh interpreter, and the heavy packages it loads."""
    probe = source + f"\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    walls, loaded = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - start)
        loaded = out.stdout.strip()
    return statistics.median(walls), loaded.split()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    baseline, _ = time_imports("", args.repeats)
    print(f"python {sys.version.split()[0]}, an empty interpreter: {baseline:.2f} s (median of {args.repeats})\n")
    print("| script | imports (s) | heavy packages loaded |")
    print("|---|---|---|")
    for script in sorted((ROOT / "scripts").glob("*.py")):
        wall, loaded = time_imports(script_imports(script), args.repeats)
        print(f"| {script.name} | {wall:.2f} | {', '.join(loaded) or '-'} |")


if __name__ == "__main__":
    main()
