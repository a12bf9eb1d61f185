"""Stage-1 sliding-window inference speed: traice's own loop against MONAI's, same model and blending.

Usage:
    python bench/stage1_speed.py [--device auto|cpu|cuda] [--shape Z Y X] [--batch N [N ...]] [--size S|L]

Both run the transformer U-Net (random weights, eval mode) over a random
float32 tile with the window (16, 256, 256), overlap 0.25 and Gaussian
blending (sigma_scale 0.125): ours is
`traice.nn.inferer.sliding_window_probabilities`, MONAI's is
`monai.inferers.sliding_window_inference` on `sigmoid(model(x))`, under the
same autocast (bf16 on CUDA, float32 on CPU). Both are timed from the numpy
tile to the numpy probabilities (host-device copies included). Each is run
once to warm up, then twice, alternating, and the best time is reported.

Defaults: on CUDA a (64, 1024, 1024) tile with sliding-window batches 4 and 8;
on CPU a (28, 448, 448) tile (8 windows, overlapping on every axis) with
batch 2, which keeps the run under 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from traice.core.windows import window_starts
from traice.nn.device import autocast, autocast_dtype, pick_device
from traice.nn.inferer import sliding_window_probabilities  # noqa: E402
from traice.nn import build_model  # noqa: E402

WINDOW = (16, 256, 256)
OVERLAP = 0.25
DEFAULTS = {"cuda": ((64, 1024, 1024), [4, 8]), "cpu": ((28, 448, 448), [2])}


def run_ours(model, volume: np.ndarray, batch: int, device: torch.device) -> np.ndarray:
    return sliding_window_probabilities(model, volume, window=WINDOW, overlap=OVERLAP, batch_size=batch, device=device)


def run_monai(model, volume: np.ndarray, batch: int, device: torch.device) -> np.ndarray:
    from monai.inferers import sliding_window_inference

    model.to(device).eval()
    with torch.inference_mode(), autocast(device):
        out = sliding_window_inference(
            torch.from_numpy(volume)[None, None].to(device), WINDOW, batch, lambda x: torch.sigmoid(model(x).float()),
            overlap=OVERLAP, mode="gaussian", sigma_scale=0.125, padding_mode="constant",
        )
    return out[0, 0].float().cpu().numpy()


def timed(fn, *args) -> tuple[float, np.ndarray]:
    device = args[-1]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    out = fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), help="tile shape (default: by device)")
    ap.add_argument("--batch", type=int, nargs="+", help="sliding-window batch sizes (default: by device)")
    ap.add_argument("--size", default="S", choices=["S", "L"], help="model size")
    args = ap.parse_args()

    device = pick_device(args.device)
    shape, batches = DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
    shape = tuple(args.shape) if args.shape else shape
    batches = args.batch or batches
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    dtype = str(autocast_dtype(device)).replace("torch.", "")
    precision = f"autocast {dtype}" if device.type == "cuda" else f"{dtype} (no autocast)"
    torch.manual_seed(0)
    model = build_model(args.size, window=WINDOW).eval()
    volume = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    windows = int(np.prod([len(window_starts(s, w, OVERLAP)) for s, w in zip(shape, WINDOW)]))
    mvox = float(np.prod(shape)) / 1e6

    print(f"device: {name}; model {args.size}; {precision}; window {WINDOW}, overlap {OVERLAP}, Gaussian blending")
    print(f"tile {shape} ({mvox:.1f} Mvoxel, {windows} windows); best of 2 after 1 warm-up, alternating")
    print()
    header = (f"{'batch':>5} {'ours s':>8} {'MONAI s':>8} {'ours Mvox/s':>12} {'MONAI Mvox/s':>13} "
              f"{'ours/MONAI':>11} {'max |diff|':>11}")
    print(header)
    print("-" * len(header))
    for batch in batches:
        times: dict[str, list[float]] = {"ours": [], "monai": []}
        outs = {}
        for fn in (run_ours, run_monai):  # warm-up
            timed(fn, model, volume, batch, device)
        for _ in range(2):
            for fn, key in ((run_ours, "ours"), (run_monai, "monai")):
                t, outs[key] = timed(fn, model, volume, batch, device)
                times[key].append(t)
        ours, ref = min(times["ours"]), min(times["monai"])
        diff = float(np.abs(outs["ours"] - outs["monai"]).max())
        print(f"{batch:>5} {ours:>8.2f} {ref:>8.2f} {mvox / ours:>12.2f} {mvox / ref:>13.2f} "
              f"{ref / ours:>10.2f}x {diff:>11.1e}")
    print()
    print("ours/MONAI: our speed over MONAI's (= MONAI time / our time; above 1: ours is faster).")


if __name__ == "__main__":
    main()
