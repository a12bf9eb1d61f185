"""Where and in which precision the networks run: the device, and mixed precision on it."""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import torch


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; anything else as ``torch.device``.

    Raises ValueError for ``"cuda"`` on a machine without a usable GPU.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = torch.device(device)
    if out.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return out


WINDOW_BATCH = {"cpu": 2, "cuda": 8}
"""Sliding windows per forward pass where none is set (``detect.batch_size: null``): on two CPU threads a
larger batch gains nothing; on an NVIDIA H200, 8 ran the detect step's maps 2.4-2.9 times as fast as 2
and 32 little faster than 8 (docs/stage1.md, "On a GPU")."""


def window_batch(device: torch.device) -> int:
    """The sliding-window batch of :data:`WINDOW_BATCH` for ``device`` (a resolved device, not ``"auto"``)."""
    return WINDOW_BATCH.get(device.type, WINDOW_BATCH["cpu"])


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU flags (Linux ``/proc/cpuinfo``) of native bfloat16 arithmetic: there bf16 autocast is faster than float32."""


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); False where it cannot be told."""
    if os.environ.get("TRAICE_CPU_BF16", "").lower() in ("0", "false", "no"):
        return False
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def autocast_dtype(device: torch.device, training: bool = False) -> torch.dtype:
    """Compute dtype on ``device``: bf16 on CUDA (fp16 without bf16 support); on a CPU with native bf16
    (:func:`cpu_has_native_bf16`) bf16 for inference (the tests check its outputs against float32) but
    float32 for training: on the development CPU (AMD EPYC, AVX512-BF16) the bf16 backward of one decoder
    convolution returned weight gradients of 1e23-1e27 within the first steps (docs/arbors.md)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and not training and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def autocast(device: torch.device, training: bool = False) -> contextlib.AbstractContextManager:
    """Mixed precision on ``device`` (:func:`autocast_dtype`), or a no-op where that is float32.

    Set ``TRAICE_CPU_BF16=0`` to keep a CPU in float32."""
    dtype = autocast_dtype(device, training)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
