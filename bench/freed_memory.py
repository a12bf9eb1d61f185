"""Workflow jobs with and without the reuse of freed memory: wall time, page faults, peak RSS, the same output.

Usage:
    python bench/freed_memory.py [--results results/demo] [--jobs detect segment train] [--repeats 3]

Runs batch 0 of a finished run's detect and segment jobs (after ``make demo``:
``results/demo``) as the workflow runs them, one process per job on one
thread (Snakemake sets ``OMP_NUM_THREADS=1`` per job), and ``train``: 6
training steps of the shipped one-pass network on two threads, as ``traice
train --threads 2`` runs them (float32, as training runs on a CPU; batch 2 x
16 x 128 x 128 of random input, the outputs' mean as the loss, Adam). Each
runs with malloc as glibc leaves it (``TRAICE_REUSE_MEMORY=0``) and with the
freed memory kept for reuse (:func:`traice.core.memory.reuse_freed_memory`,
what every job now sets first), alternately, so that a busy machine slows
both alike. Prints each run's wall time (the whole process, imports
included), minor page faults and peak RSS, the medians, and whether both
settings wrote the same table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

JOB = """
import resource, sys, time
started = time.perf_counter()
from traice.core.memory import reuse_freed_memory
reuse_freed_memory()
from traice.io.plan import Plan
job, results, out = sys.argv[1], sys.argv[2], sys.argv[3]
plan = Plan.read(f"{results}/work/plan/plan.json")
if job == "train":
    import pandas as pd, torch
    from traice.nn.checkpoints import load_model
    from traice.weights import shipped_weights
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = load_model(shipped_weights("cells")).to(memory_format=torch.channels_last_3d).train()
    optimiser = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.randn(2, 1, 16, 128, 128).contiguous(memory_format=torch.channels_last_3d)
    losses = []
    for _ in range(6):
        loss = model(x).mean()
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        losses.append(float(loss))
    table = pd.DataFrame({"loss": losses})
elif job == "detect":
    from traice.stages.detect import DetectParams, detect_batch
    table = detect_batch(plan, 0, f"{out}/somas.parquet", DetectParams(), f"{out}/maps.zarr")
else:
    from traice.stages.segment import SegmentParams, segment_batch
    table = segment_batch(plan, f"{results}/cells.parquet", 0, f"{out}/claims.zarr", SegmentParams(),
                          f"{results}/work/maps/index.parquet")
table.to_parquet(f"{out}/table.parquet")
usage = resource.getrusage(resource.RUSAGE_SELF)
print(time.perf_counter() - started, usage.ru_minflt, usage.ru_maxrss / 1e6)
"""


def run_job(job: str, results: Path, reuse: bool, out: Path) -> tuple[float, int, float, pd.DataFrame]:
    """One job in a fresh process: (wall s, minor page faults, peak RSS GB, its table)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2" if job == "train" else "1", "TRAICE_REUSE_MEMORY": "1" if reuse else "0"}
    done = subprocess.run([sys.executable, "-c", JOB, job, str(results.resolve()), str(out)], cwd=ROOT, env=env,
                          check=True, capture_output=True, text=True)
    seconds, faults, rss = done.stdout.split()[-3:]
    return float(seconds), int(faults), float(rss), pd.read_parquet(out / "table.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results/demo", type=Path)
    ap.add_argument("--jobs", nargs="+", default=["detect", "segment", "train"], choices=["detect", "segment", "train"])
    ap.add_argument("--repeats", type=int, default=3, help="runs of each job per setting")
    args = ap.parse_args()
    if not (args.results / "work" / "plan" / "plan.json").exists():
        sys.exit(f"error: {args.results} holds no finished run (run `make demo` first)")
    print(f"{'job':8s} {'freed memory':13s} {'run':>3s} {'wall s':>7s} {'page faults':>12s} {'peak RSS GB':>11s}")
    summary = []
    for job in args.jobs:
        runs: dict[bool, list] = {False: [], True: []}
        for repeat in range(args.repeats):
            for reuse in (False, True):
                with tempfile.TemporaryDirectory() as tmp:
                    runs[reuse].append(run_job(job, args.results, reuse, Path(tmp)))
                seconds, faults, rss, _ = runs[reuse][-1]
                print(f"{job:8s} {'reused' if reuse else 'handed back':13s} {repeat + 1:3d} {seconds:7.1f} {faults:12d} "
                      f"{rss:11.2f}")
        same = all(r[3].equals(runs[False][0][3]) for r in runs[False] + runs[True])
        for reuse in (False, True):
            summary.append((job, "reused" if reuse else "handed back", *(statistics.median(r[i] for r in runs[reuse])
                                                                         for i in range(3)), same))
    print(f"\nmedians of {args.repeats} runs")
    print(f"| job | freed memory | wall s | page faults | peak RSS GB | same table |\n|---|---|---|---|---|---|")
    for job, setting, seconds, faults, rss, same in summary:
        print(f"| {job} | {setting} | {seconds:.1f} | {faults:.0f} | {rss:.2f} | {'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
