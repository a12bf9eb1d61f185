"""Empty space around the tissue and uneven illumination: one synthetic scene alone, inside a larger image whose
surroundings are empty, and lit unevenly.

Usage:
    python bench/empty_space.py [--images alone zeros dark clipped falloff] [--regime default] [--cells 60]
                                [--extent 32 1024 1024] [--seed 0] [--pad 768] [--falloff 0.333] [--cores 2]
                                [--out /tmp/traice-empty-space]

A whole-brain stack holds the brain and the space around it: a stitched
light-sheet volume fills what no tile covered with 0, and a camera outside the
tissue records its dark level and read noise; a stack whose background was
subtracted (as Fiji's "Subtract Background" does) holds 0 wherever the noise
fell below it. The scene (the demo's by default) is written as OME-Zarr with
its truth: alone; with ``--pad`` voxels of zeros on either side along x
("zeros"); with the same margins filled with the camera's offset plus its read
noise and no photons ("dark"); and alone with its background level (its
median) subtracted and clipped at 0 ("clipped"); and with the light falling
linearly along x to ``--falloff`` of its strength at the far side, as a
vignetting objective or an unevenly lit light sheet gives ("falloff": the
counts above the camera's offset scaled, noise included). ``--regime`` renders
the scene in a named imaging regime (:mod:`traice.synth.regimes`; ``confocal``:
a background of 30 photons, which the falloff darkens with the cells). Each
runs through the workflow with the defaults. Prints the plan's background median and noise
sigma, the detections, soma F1 and the per-cell scores against the truth per
image; the scene's cells are the same in each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from run_config import run_config  # noqa: E402

from traice.stages.evaluate import evaluate_run  # noqa: E402
from traice.synth import synthesize, write_synthetic  # noqa: E402
from traice.synth.regimes import REGIMES, regime_params  # noqa: E402


def padded(brain, pad: int, fill: str, rng: np.random.Generator):
    """``brain`` with ``pad`` voxels of empty space on either side along x: zeros, or the camera's dark level."""
    widths = ((0, 0), (0, 0), (pad, pad))
    image = np.pad(brain.image, widths)
    if fill == "dark":
        p = brain.params
        dark = np.clip(np.rint(p.offset + rng.normal(0.0, p.read_noise, image.shape)), 0, 65535).astype(image.dtype)
        inside = np.zeros(image.shape, bool)
        inside[..., pad:pad + brain.image.shape[2]] = True
        image = np.where(inside, image, dark)
    truth = brain.truth.copy()
    truth["x"] += pad
    truth["x_um"] += pad * brain.params.spacing[2]
    shape = image.shape
    return replace(brain, image=image, cells=np.pad(brain.cells, widths), somas=np.pad(brain.somas, widths),
                   truth=truth, params=replace(brain.params, shape=shape))


def clipped(brain):
    """``brain`` with its background level (the image's median) subtracted and the result clipped at 0."""
    level = np.median(brain.image)
    return replace(brain, image=np.clip(brain.image.astype(np.float64) - level, 0, None).astype(brain.image.dtype))


def falloff(brain, far: float):
    """``brain`` lit unevenly: the counts above the camera's offset scaled from 1 at x = 0 to ``far`` at the last x."""
    light = np.linspace(1.0, far, brain.image.shape[2])
    counts = brain.params.offset + (brain.image.astype(np.float64) - brain.params.offset) * light
    return replace(brain, image=np.clip(np.rint(counts), 0, np.iinfo(brain.image.dtype).max).astype(brain.image.dtype))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", nargs="+", default=["alone", "zeros", "dark", "clipped"],
                    choices=["alone", "zeros", "dark", "clipped", "falloff"])
    ap.add_argument("--regime", default="default", choices=sorted(REGIMES), help="imaging regime of the scene")
    ap.add_argument("--cells", type=int, default=60)
    ap.add_argument("--extent", type=int, nargs=3, default=[32, 1024, 1024], help="the scene in voxels (z, y, x)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pad", type=int, default=768, help="empty voxels on either side along x")
    ap.add_argument("--falloff", type=float, default=1 / 3, help="the light's strength at the far side (falloff)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", default="/tmp/traice-empty-space")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    brain = synthesize(regime_params(args.regime, shape=tuple(args.extent), cells=args.cells, seed=args.seed))
    rng = np.random.default_rng(args.seed)
    make = {"alone": lambda: brain, "zeros": lambda: padded(brain, args.pad, "zeros", rng),
            "dark": lambda: padded(brain, args.pad, "dark", rng), "clipped": lambda: clipped(brain),
            "falloff": lambda: falloff(brain, args.falloff)}
    images = {name: make[name]() for name in args.images}
    for name, b in images.items():
        write_synthetic(b, out / "images" / f"{name}.ome.zarr")
    run_config({"samples": {name: str(out / "images" / f"{name}.ome.zarr") for name in images},
                "results": str(out / "results")}, out, args.cores)

    rows = []
    for name in images:
        results = out / "results" / name
        stats = json.loads((results / "work" / "plan" / "plan.json").read_text())["stats"]
        scores = evaluate_run(results, out / "images" / f"{name}.ome.zarr")
        rows.append({"image": name, "voxels": " × ".join(map(str, images[name].image.shape)),
                     "median": round(stats["median"], 1), "sigma": f"{stats['sigma']:.3g}",
                     "detected": scores["cells (detected)"], "true": scores["cells (true)"],
                     "soma F1": round(scores["soma F1"], 3), "precision": round(scores["soma precision"], 3),
                     "recall": round(scores["soma recall"], 3), "Dice": round(scores["branch Dice (all true cells)"], 3),
                     "clDice": round(scores["branch clDice (all true cells)"], 3), "PQ": round(scores["PQ"], 3)})
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
