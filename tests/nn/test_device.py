"""Where the networks run, and in which precision: bf16 on CPUs that compute it natively, checked against float32."""

from __future__ import annotations

import numpy as np
import torch

from traice.core.intensity import model_input, robust_stats
from traice.nn.checkpoints import load_model
from traice.nn.device import autocast, autocast_dtype, cpu_has_native_bf16
from traice.synth import SynthParams, synthesize
from traice.weights import shipped_weights


def test_bf16_only_where_native_and_not_when_switched_off(monkeypatch):
    cpu = torch.device("cpu")
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert autocast_dtype(cpu) == expected
    monkeypatch.setenv("TRAICE_CPU_BF16", "0")
    cpu_has_native_bf16.cache_clear()
    try:
        assert autocast_dtype(cpu) == torch.float32
        with autocast(cpu):
            assert torch.ones(2, 2) @ torch.ones(2, 2) is not None and not torch.is_autocast_enabled("cpu")
    finally:
        cpu_has_native_bf16.cache_clear()


def test_shipped_networks_agree_in_bf16_and_float32():
    """The bf16 maps of the shipped networks match float32 (the check behind picking bf16 on a CPU)."""
    brain = synthesize(SynthParams(shape=(16, 128, 128), cells=3, seed=4))
    x = torch.from_numpy(model_input(brain.image, robust_stats(brain.image))[None, None])
    for task in ("soma", "cells"):
        model = load_model(shipped_weights(task)).eval()
        with torch.inference_mode():
            full = model(x).float()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                half = model(x).float()
        p_full, p_half = torch.sigmoid(full[:, :2]), torch.sigmoid(half[:, :2])
        assert float((p_full - p_half).abs().mean()) < 0.01, task
        assert float(((p_full > 0.5) == (p_half > 0.5)).float().mean()) > 0.995, task
        if full.shape[1] == 5:  # offsets, in offset units (40 µm): within 0.5 µm on average
            assert float((full[:, 2:] - half[:, 2:]).abs().mean()) < 0.0125, task
