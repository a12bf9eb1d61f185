"""The one-pass network on a CUDA GPU against the CPU: the same weights' maps, somas and speed; training steps.

Usage:
    python bench/gpu.py [--model PATH] [--batch 2 8] [--steps 40] [--train-batch 2 8] [--out /tmp/traice-gpu]

Maps: the demo volume (config/config.yaml's synthetic default: 32 x 1024 x 1024
voxels, 60 cells) through the one-pass weights (default: the shipped ones) as
the detect step runs them (``traice.stages.detect.network.network_maps``,
overlap 0.25), on the CPU in float32 (all its threads) and on CUDA (bf16
autocast, what ``detect.device: auto`` picks there), with each
sliding-window batch of ``--batch`` (the CPU with its default, 2). Against the CPU's maps: the mean and the
largest absolute difference of the soma and the foreground probability, the
share of voxels on the same side of the soma threshold (0.5) and of the
segment step's foreground threshold (0.1), and the somas found (the two sets
matched within 2 µm; each set's F1 against the truth within 6 µm). Time: the
maps from the numpy block to the numpy maps (host copies and the return to
the image's voxels included), best of two runs after a warm-up, in Mvoxel/s;
and the soma calling that follows them in the detect step, which runs on the
CPU on either device (one run).

Training: ``traice.training.loop.train``, the cells task, the S network,
windows 16 x 128 x 128 (the shipped recipe; ``--train-batch`` windows a step),
from the same weights on two synthetic volumes of 32 x 512 x 512 (one validates), ``--steps`` steps on CUDA with
one validation at the end; seconds per step over the whole run (the batches
are drawn and augmented on the CPU, as in training), and whether every step
had finite gradients.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from pathlib import Path

os.environ["TRAICE_CPU_BF16"] = "0"  # the CPU reference in float32

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo import demo_brain  # noqa: E402
from traice.core.metrics import match_points  # noqa: E402
from traice.io.ome import ArrayImage  # noqa: E402
from traice.nn.device import autocast_dtype, window_batch  # noqa: E402
from traice.stages.detect import DetectParams  # noqa: E402
from traice.stages.detect.network import load, network_maps, somas_from_probability  # noqa: E402
from traice.stages.plan import intensity_stats  # noqa: E402
from traice.stages.segment.params import METHOD_PROBABILITY  # noqa: E402
from traice.training.loop import train  # noqa: E402
from traice.training.recipes import TrainConfig  # noqa: E402
from traice.weights import shipped_weights  # noqa: E402

FOREGROUND_THRESHOLD = METHOD_PROBABILITY["growth"]  # segment.probability's default for growth
TRAIN_SOURCES = {"train": [("synthetic", {"seed": 1001, "shape": [32, 512, 512], "cells": 33, "regime": "confocal"})],
                 "val": [("synthetic", {"seed": 1000, "shape": [32, 512, 512], "cells": 33, "regime": "confocal"})]}


def timed_maps(brain, stats, model, params: DetectParams) -> tuple[np.ndarray, float]:
    """The maps and the best of two timed runs after a warm-up (seconds)."""
    spacing = tuple(brain.params.spacing)
    maps = network_maps(brain.image, spacing, stats, params, model)
    best = np.inf
    for _ in range(2):
        started = time.perf_counter()
        maps = network_maps(brain.image, spacing, stats, params, model)
        best = min(best, time.perf_counter() - started)
    return maps, best


def somas(maps: np.ndarray, spacing) -> np.ndarray:
    return somas_from_probability(maps[0], spacing, DetectParams())[["z", "y", "x"]].to_numpy(float) * np.asarray(spacing)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="one-pass weights (default: the shipped ones)")
    ap.add_argument("--batch", type=int, nargs="+", default=[2, 8], help="sliding-window batches on CUDA")
    ap.add_argument("--steps", type=int, default=40, help="training steps per run (0: no training runs)")
    ap.add_argument("--train-batch", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--out", default="/tmp/traice-gpu", type=Path)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA GPU on this machine")
    gpu = torch.cuda.get_device_name(0)
    print(f"GPU: {gpu}; CPU threads: {torch.get_num_threads()}; torch {torch.__version__}; "
          f"CUDA autocast {autocast_dtype(torch.device('cuda'))}")

    brain = demo_brain()
    spacing = tuple(brain.params.spacing)
    stats = intensity_stats(ArrayImage(brain.image, spacing))
    truth = brain.truth[["z_um", "y_um", "x_um"]].to_numpy()
    model = load(DetectParams(model=args.model))
    voxels = brain.image.size
    cpu_maps, cpu_seconds = timed_maps(brain, stats, model, DetectParams(device="cpu"))
    started = time.perf_counter()
    cpu_somas = somas(cpu_maps, spacing)
    calling_seconds = time.perf_counter() - started
    print(f"\ndemo volume {brain.image.shape}, {len(truth)} cells; maps against the CPU in float32\n")
    print(f"{'device':<6} {'batch':>5} {'Mvox/s':>7} {'soma |d| mean':>13} {'max':>6} {'same >0.5':>9} "
          f"{'fg |d| mean':>11} {'max':>6} {'same >0.1':>9} {'somas':>5} {'matched':>7} {'F1 truth':>8}")
    f1 = match_points(cpu_somas, truth, 6.0).f1
    print(f"{'cpu':<6} {window_batch(torch.device('cpu')):>5} {voxels / cpu_seconds / 1e6:>7.2f} {'':>13} {'':>6} {'':>9} "
          f"{'':>11} {'':>6} {'':>9} {len(cpu_somas):>5} {'':>7} {f1:>8.3f}", flush=True)
    for batch in args.batch:
        maps, seconds = timed_maps(brain, stats, model, DetectParams(device="cuda", batch_size=batch))
        d_soma, d_fg = np.abs(maps[0] - cpu_maps[0]), np.abs(maps[1] - cpu_maps[1])
        same_soma = np.mean((maps[0] > 0.5) == (cpu_maps[0] > 0.5))
        same_fg = np.mean((maps[1] > FOREGROUND_THRESHOLD) == (cpu_maps[1] > FOREGROUND_THRESHOLD))
        found = somas(maps, spacing)
        matched = match_points(found, cpu_somas, 2.0)
        print(f"{'cuda':<6} {batch:>5} {voxels / seconds / 1e6:>7.2f} {d_soma.mean():>13.5f} {d_soma.max():>6.3f} "
              f"{same_soma:>9.5f} {d_fg.mean():>11.5f} {d_fg.max():>6.3f} {same_fg:>9.5f} {len(found):>5} "
              f"{matched.tp:>7} {match_points(found, truth, 6.0).f1:>8.3f}", flush=True)
    print(f"\nsoma calling on the maps (somas_from_probability, on the CPU whatever the device): {calling_seconds:.2f} s, "
          f"{voxels / calling_seconds / 1e6:.2f} Mvox/s", flush=True)

    if args.steps:
        print(f"\ntraining, cells task, S network, {args.steps} steps on CUDA\n")
        print(f"{'batch':>5} {'steps':>5} {'skipped':>7} {'s/step':>7} {'val Dice':>8} {'val soma Dice':>13} {'data s':>6}")
        for batch in args.train_batch:
            cfg = TrainConfig(task="cells", batch_size=batch, steps=args.steps, eval_every=args.steps,
                              checkpoint_every=args.steps, val_windows=8, device="cuda", seed=0,
                              init=str(args.model or shipped_weights("cells")))
            run = args.out / f"train-batch{batch}"
            shutil.rmtree(run, ignore_errors=True)  # a fresh run, not a resumed one
            summary = train(cfg, TRAIN_SOURCES, run, args.out / "cache", progress=False)
            last = list(csv.DictReader(open(run / "metrics.csv")))[-1]
            print(f"{batch:>5} {summary['steps']:>5} {summary['skipped_steps']:>7} "
                  f"{summary['train_seconds'] / summary['steps']:>7.3f} {float(last['val_dice']):>8.3f} "
                  f"{float(last['val_soma_dice']):>13.3f} {summary['data_seconds']:>6.0f}", flush=True)


if __name__ == "__main__":
    main()
