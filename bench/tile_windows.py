"""Network windows per tile and the one-pass detect throughput of an interior tile, per tile shape.

Usage:
    python bench/tile_windows.py [--shapes 64,512,512 74,528,528] [--halo-um 16] [--threads 2] [--repeats 1]

A detect job runs the network in sliding windows (16 x 128 x 128, overlap
0.25) over each tile's read box: its core (``plan.tile_shape``, voxels of the
networks' grid) plus ``plan.halo_um`` of context on every side, as a tile
inside a whole brain has it. The windows a read box needs come in steps of the
window's stride, so a core a little larger than another may need no more
windows. For each shape the bench prints the windows per read box, the network
voxels computed per core voxel, and the time of the network's maps
(:func:`traice.stages.detect.network.network_maps`, the shipped one-pass
weights, ``detect.device: auto``) over one read box of a synthetic field
rendered in the demo's regime, as core Mvoxel per second (best of
``--repeats`` runs), and the process's peak RSS after it (the maps of a larger
box raise it; run one shape per call to see each on its own).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.core.geometry import um_to_voxels  # noqa: E402
from traice.core.grid import MODEL_SPACING_UM  # noqa: E402
from traice.core.windows import window_starts  # noqa: E402
from traice.io.ome import ArrayImage  # noqa: E402
from traice.stages.detect import DetectParams  # noqa: E402
from traice.stages.detect.network import load, network_maps  # noqa: E402
from traice.stages.plan import intensity_stats  # noqa: E402
from traice.synth import synthesize  # noqa: E402
from traice.synth.regimes import regime_params  # noqa: E402


def read_box(core: tuple[int, ...], halo: tuple[int, ...]) -> tuple[int, ...]:
    """An interior tile's read box: the core with the halo on both sides (voxels)."""
    return tuple(c + 2 * h for c, h in zip(core, halo))


def windows(box: tuple[int, ...], window: tuple[int, ...], overlap: float) -> int:
    """Sliding windows over a box of that shape (the inferer's positions)."""
    return int(np.prod([len(window_starts(n, w, overlap)) for n, w in zip(box, window)]))


def peak_mb() -> float:
    """This process's peak resident memory so far (MB; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["64,512,512", "74,528,528"], help="tile cores, z,y,x grid voxels")
    ap.add_argument("--halo-um", type=float, default=16.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = DetectParams()
    model = load(params)
    window = tuple(model.window)
    halo = um_to_voxels(args.halo_um, MODEL_SPACING_UM)  # as the plan counts it
    cores = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
    boxes = [read_box(c, halo) for c in cores]
    field = tuple(max(b[i] for b in boxes) for i in range(3))
    brain = synthesize(regime_params("default", seed=11, shape=field, cells=int(np.prod(field) // 500_000)))
    stats = intensity_stats(ArrayImage(brain.image, MODEL_SPACING_UM))
    print(f"halo {halo} voxels, window {window}, overlap {params.overlap}, {args.threads} threads, "
          f"device {params.device}; field {field}")
    print(f"peak RSS after rendering the field: {peak_mb():.0f} MB")
    print(f"{'core':>16} {'read box':>16} {'windows':>8} {'net vox / core vox':>19} {'s':>7} {'core Mvox/s':>12} "
          f"{'peak MB':>8}")
    for core, box in zip(cores, boxes):
        block = np.ascontiguousarray(brain.image[tuple(slice(0, n) for n in box)])
        n = windows(box, window, params.overlap)
        best = np.inf
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            network_maps(block, MODEL_SPACING_UM, stats, params, model)
            best = min(best, time.perf_counter() - t0)
        core_vox = float(np.prod(core))
        print(f"{'x'.join(map(str, core)):>16} {'x'.join(map(str, box)):>16} {n:>8} "
              f"{n * np.prod(window) / core_vox:>19.2f} {best:>7.1f} {core_vox / best / 1e6:>12.3f} "
              f"{peak_mb():>8.0f}", flush=True)


if __name__ == "__main__":
    main()
