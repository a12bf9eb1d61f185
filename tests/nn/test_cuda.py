"""The CUDA path: the shipped network's maps on a GPU against the CPU, and a training run stopped and resumed there.

Skipped on machines without a CUDA GPU (CI has none); `bench/gpu.py` measures the same at full size.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from traice.core.metrics import match_points
from traice.io.ome import ArrayImage
from traice.nn.checkpoints import load_model
from traice.nn.device import autocast_dtype, pick_device
from traice.stages.detect import DetectParams
from traice.stages.detect.network import load, network_maps, somas_from_probability
from traice.stages.plan import intensity_stats
from traice.synth import SynthParams, synthesize
from traice.training.loop import train
from traice.training.recipes import TrainConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA GPU on this machine: the CUDA path is checked where there is one")

TINY = TrainConfig(embed_dim=8, depths=(1, 1, 1, 1), window=(16, 64, 64), batch_size=2, steps=4, warmup=2,
                   eval_every=2, checkpoint_every=1, val_windows=2, device="cuda")
SOURCES = {"train": [("synthetic", {"seed": 5, "shape": [16, 128, 128], "cells": 4})],
           "val": [("synthetic", {"seed": 6, "shape": [16, 128, 128], "cells": 4})]}


def test_auto_picks_the_gpu_in_bf16():
    device = pick_device("auto")
    assert device.type == "cuda"
    assert autocast_dtype(device) in (torch.bfloat16, torch.float16)


def test_maps_on_cuda_match_the_cpu(float32_cpu):
    """The detect step's maps and somas on a GPU (bf16) against the CPU in float32, the shipped weights."""
    brain = synthesize(SynthParams(shape=(16, 256, 256), cells=6, seed=4))
    spacing = tuple(brain.params.spacing)
    stats = intensity_stats(ArrayImage(brain.image, spacing))
    model = load(DetectParams())
    cpu = network_maps(brain.image, spacing, stats, DetectParams(device="cpu"), model)
    gpu = network_maps(brain.image, spacing, stats, DetectParams(device="cuda"), model)
    assert gpu.shape == cpu.shape and gpu.dtype == cpu.dtype
    for channel in (0, 1):  # soma, foreground
        assert float(np.abs(gpu[channel] - cpu[channel]).mean()) < 0.01, channel
        assert float(((gpu[channel] > 0.5) == (cpu[channel] > 0.5)).mean()) > 0.995, channel
    somas = [somas_from_probability(m[0], spacing, DetectParams())[["z", "y", "x"]].to_numpy(float) for m in (cpu, gpu)]
    assert len(somas[0]) >= 4
    assert match_points(somas[0] * spacing, somas[1] * spacing, 2.0).f1 == 1.0


def test_training_on_cuda_resumes_to_the_weights_of_a_straight_run(tmp_path):
    cache = tmp_path / "cache"
    straight = train(TINY, SOURCES, tmp_path / "straight", cache, progress=False)
    assert straight["device"].startswith("cuda") and straight["steps"] == 4 and straight["skipped_steps"] == 0
    train(dataclasses.replace(TINY, steps=2), SOURCES, tmp_path / "resumed", cache, progress=False)
    train(TINY, SOURCES, tmp_path / "resumed", cache, progress=False)  # reads the step-2 checkpoint written on the GPU
    a, b = load_model(tmp_path / "straight" / "model.pt"), load_model(tmp_path / "resumed" / "model.pt")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert p.device.type == "cpu"
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4, msg=name)  # GPU kernels need not be bitwise repeatable
