"""bfloat16 against float32 on the CPU: one S network, inference and a training step.

Usage:
    python bench/precision.py [--repeats 4] [--threads 2]

Times the shipped one-pass network (channels-last 3D, batch 2 × 16 × 128 ×
128, random input) in float32 and under bf16 autocast: a forward pass in
inference mode, and a forward + backward (mean of the outputs as the loss).
The first repeat of each is a warm-up and is not counted; the table gives the
median of the others. Also prints whether this CPU computes bf16 natively
(traice.nn.device.cpu_has_native_bf16), which decides what `detect.device:
auto` uses.
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

from traice.nn.checkpoints import load_model  # noqa: E402
from traice.nn.device import cpu_has_native_bf16  # noqa: E402
from traice.weights import shipped_weights  # noqa: E402


def timed(model, x, bf16: bool, train: bool, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        if train:
            model.train()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(x)
            out.float().mean().backward()
            model.zero_grad(set_to_none=True)
        else:
            model.eval()
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model(x)
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(shipped_weights("cells")).to(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 1, 16, 128, 128).contiguous(memory_format=torch.channels_last_3d)
    print(f"CPU threads {args.threads}; native bf16: {cpu_has_native_bf16()}; batch 2 x 16 x 128 x 128, channels-last 3D")
    print(f"{'':<34} {'float32 s':>9} {'bf16 s':>7} {'speed-up':>8}")
    for name, train in (("inference (forward)", False), ("training step (forward + backward)", True)):
        full, half = (timed(model, x, bf16, train, args.repeats) for bf16 in (False, True))
        print(f"{name:<34} {full:>9.3f} {half:>7.3f} {full / half:>7.2f}x")


if __name__ == "__main__":
    main()
