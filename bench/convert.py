"""Conversion streams: peak memory of `traice convert` does not grow with the number of planes.

Usage:
    python bench/convert.py [--planes 32] [--factor 8] [--plane 2048 2048] [--out /tmp/traice-convert]

Writes a folder of 2D uint16 TIFF planes (``--planes`` and ``--planes x
--factor`` of them, each ``--plane`` pixels), converts each with
``traice convert`` in a child process and reads that process's peak RSS.
Prints a table.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile


def write_planes(folder: Path, n: int, plane) -> int:
    """``n`` noisy uint16 planes; returns their bytes on disk."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(90, 110, plane, dtype=np.uint16)
    for z in range(n):
        tifffile.imwrite(folder / f"plane_{z:05d}.tif", base + np.uint16(z % 7))
    return sum(f.stat().st_size for f in folder.iterdir())


def convert_in_child(folder: Path, out: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of ``traice convert`` run as its own process."""
    probe = ("import resource, subprocess, sys, time; t = time.time(); "
             "r = subprocess.run(sys.argv[1:]).returncode; "
             "print(time.time() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, r)")
    cmd = [sys.executable, "-c", probe, sys.executable, "-m", "traice.cli", "convert", str(folder), str(out),
           "--voxel-size", "1.25", "0.4", "0.4"]
    seconds, peak, rc = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-3:]
    if int(rc) != 0:
        sys.exit(f"traice convert failed on {folder}")
    return float(seconds), float(peak)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--planes", type=int, default=32)
    ap.add_argument("--factor", type=int, default=8)
    ap.add_argument("--plane", type=int, nargs=2, default=[2048, 2048])
    ap.add_argument("--out", default="/tmp/traice-convert")
    args = ap.parse_args()
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    rows = []
    for n in (args.planes, args.planes * args.factor):
        folder = root / f"planes_{n}"
        size = write_planes(folder, n, tuple(args.plane))
        seconds, peak = convert_in_child(folder, root / f"out_{n}.ome.zarr")
        rows.append((n, size / 2**20, seconds, size / 2**20 / seconds, peak))
        shutil.rmtree(folder)
    print("| planes | input MB | seconds | MB/s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for n, mb, s, rate, peak in rows:
        print(f"| {n} | {mb:.0f} | {s:.1f} | {rate:.0f} | {peak:.0f} |")
    print(f"\npeak RSS x{rows[1][4] / rows[0][4]:.2f} for x{args.factor} the planes")


if __name__ == "__main__":
    main()
