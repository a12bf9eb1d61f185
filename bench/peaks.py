"""The soma maxima of the detect step: skimage's peak_local_max against traice's footprint_maxima, same peaks.

Usage:
    python bench/peaks.py [--repeats 3]

The demo volume (config/config.yaml's synthetic default) through the shipped one-pass weights once; then, as
``traice.stages.detect.somas.split_somas`` does, each connected part of the soma mask (p > 0.5) in its bounding
box, its maxima of the soma probability smoothed at half the smallest soma radius, within the ellipsoid
footprint of 1.3 times that radius: by ``skimage.feature.peak_local_max`` (a maximum filter of the whole
footprint over every voxel of the box) and by ``footprint_maxima`` (the footprint read around the voxels
that are maxima of its central 3 x 3 x 3 only). Checks that both give the same peaks in the same order and
prints the seconds of each over all parts, best of ``--repeats``, on this machine's CPU (both run on one
thread).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo import demo_brain  # noqa: E402

from traice.core.masks import ellipsoid_footprint  # noqa: E402
from traice.io.ome import ArrayImage  # noqa: E402
from traice.stages.detect import DetectParams  # noqa: E402
from traice.stages.detect.network import load, network_maps  # noqa: E402
from traice.stages.detect.somas import footprint_maxima  # noqa: E402
from traice.stages.plan import intensity_stats  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    brain = demo_brain()
    spacing = np.asarray(brain.params.spacing)
    params = DetectParams()
    prob = network_maps(brain.image, tuple(spacing), intensity_stats(ArrayImage(brain.image, tuple(spacing))), params,
                        load(params))[0]
    blob = ndimage.gaussian_filter(prob, sigma=(params.soma_radius_um[0] / 2) / spacing)
    floor = float(blob.min())
    footprint = ellipsoid_footprint(1.3 * params.soma_radius_um[0], spacing)
    parts, n = ndimage.label(prob > params.probability)
    boxes = [(box, parts[box] == label) for label, box in enumerate(ndimage.find_objects(parts), start=1)]

    def skimage_peaks():
        return [peak_local_max(blob[box], footprint=footprint, labels=mask.view(np.uint8), exclude_border=False,
                               threshold_abs=floor) for box, mask in boxes]

    def our_peaks():
        return [footprint_maxima(blob[box], mask, footprint, floor) for box, mask in boxes]

    seconds = {}
    for name, find in (("skimage peak_local_max", skimage_peaks), ("traice footprint_maxima", our_peaks)):
        best = np.inf
        for _ in range(args.repeats):
            started = time.perf_counter()
            peaks = find()
            best = min(best, time.perf_counter() - started)
        seconds[name] = (best, peaks)
    (a, pa), (b, pb) = seconds.values()
    same = all(np.array_equal(x, y) for x, y in zip(pa, pb))
    print(f"demo volume {brain.image.shape}: {n} parts of the soma mask, footprint {footprint.shape} "
          f"({int(footprint.sum())} voxels), {sum(len(p) for p in pa)} maxima; the same peaks in the same order: {same}\n")
    print(f"{'method':<24} {'s (all parts)':>13} {'speed-up':>8}")
    for name, (s, _) in seconds.items():
        print(f"{name:<24} {s:>13.3f} {a / s:>7.2f}x")
    if not same:
        sys.exit("the two methods disagree")


if __name__ == "__main__":
    main()
