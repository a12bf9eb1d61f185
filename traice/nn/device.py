"""Where and in which precision the networks run: the device, and mixed precision on it."""

from __future__ import annotations

import contextlib

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


def autocast_dtype(device: torch.device) -> torch.dtype:
    """Compute dtype of inference on ``device``: bf16 on CUDA (fp16 without bf16 support), else float32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision for inference on ``device``: CUDA autocast, or no-op (float32) on CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=autocast_dtype(device))
    return contextlib.nullcontext()
