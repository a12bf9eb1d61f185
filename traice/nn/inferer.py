"""Sliding-window inference of the transformer U-Net over a whole tile.

Stage 1 runs the network over a whole tile in overlapping windows and blends
the windows' sigmoid probabilities with a Gaussian weight::

    raw tile (Z, Y, X) counts
      -> model_input (background-noise units, arcsinh)     (Z, Y, X) float32
      -> pad (constant 0, split as MONAI) to >= window      (Z', Y', X')
      -> windows at window_starts per axis, in batches      (B, 1, wz, wy, wx)
      -> sigmoid(model(batch)) * gaussian_importance        (B, wz, wy, wx)
      -> summed into the tile, divided by the summed weight (Z', Y', X')
      -> padding cropped                                    (Z, Y, X) probabilities

The blending reproduces ``monai.inferers.sliding_window_inference`` with
``mode="gaussian", sigma_scale=0.125, padding_mode="constant"`` (same window
positions, weights and padding), with fewer copies: the padded tile is put on
the device once, windows are gathered into one reused batch buffer, and each
window is added in place into preallocated accumulators; and the network runs
in the channels-last 3D memory layout, which convolves fastest.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from traice.core.maps import CHANNELS, PROBABILITY_CHANNELS
from traice.core.memory import reuse_freed_memory
from traice.core.windows import padding, window_starts
from traice.nn.blocks import as_triple
from traice.nn.device import autocast, pick_device, window_batch


def gaussian_importance(window: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """Blending weight of one window: a separable Gaussian centred in it, ``(Z, Y, X)`` float32.

    Per axis of size ``n``: ``exp(-0.5 * ((i - (n - 1) / 2) / (sigma_scale * n))**2)``,
    ``i = 0 .. n-1``; the 3D weight is their product. The peak is 1 for odd
    sizes and just below 1 for even ones (the centre falls between voxels).
    Weights below ``1e-3`` (window corners: ``exp(-8)`` per axis at the
    default scale) are raised to ``1e-3`` so that a voxel covered only by
    window borders still has a positive weight sum.

    Equals ``monai.data.utils.compute_importance_map(window, mode="gaussian",
    sigma_scale=sigma_scale)``.
    """
    window = as_triple(window, "window")
    weight = None
    for n in window:
        offset = torch.arange(n, dtype=torch.float32) - (n - 1) / 2.0
        g = torch.exp(offset**2 / (-2.0 * (sigma_scale * n) ** 2))
        weight = g if weight is None else weight.unsqueeze(-1) * g
    floor = max(float(weight.min()), 1e-3)
    return weight.clamp_(min=floor)


def output_channels(model: nn.Module) -> int:
    """The number of maps ``model`` returns: its ``out_channels``, else its head's (1 for neither)."""
    return int(getattr(model, "out_channels", getattr(getattr(model, "head", None), "out_channels", 1)))


def axis_overlaps(overlap: float | Sequence[float]) -> tuple[float, float, float]:
    """``0.25 -> (0.25, 0.25, 0.25)``; a 3-sequence (z, y, x) is returned as a tuple of floats."""
    if isinstance(overlap, (int, float)):
        return (float(overlap),) * 3
    out = tuple(float(o) for o in overlap)
    if len(out) != 3:
        raise ValueError(f"overlap must be one number or 3 (z, y, x), got {len(out)}")
    return out  # type: ignore[return-value]


def sliding_window_probabilities(
    model: nn.Module,
    volume: np.ndarray,
    window: Sequence[int] = (16, 256, 256),
    overlap: float | Sequence[float] = 0.25,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> np.ndarray:
    """Probabilities of a one-channel model over a whole volume: :func:`sliding_window_maps`'s only channel,
    ``(Z, Y, X)`` float32 in [0, 1]."""
    maps = sliding_window_maps(model, volume, window, overlap, batch_size, device, progress)
    if maps.shape[0] != 1:
        raise ValueError(f"model must return (B, 1, *window) logits, got {maps.shape[0]} channels")
    return maps[0]


def sliding_window_maps(
    model: nn.Module,
    volume: np.ndarray,
    window: Sequence[int] = (16, 256, 256),
    overlap: float | Sequence[float] = 0.25,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
    probability_channels: int | None = None,
) -> np.ndarray:
    """Every output map of a model over a whole volume from overlapping windows: ``(C, Z, Y, X)`` float32.

    The first ``probability_channels`` channels (default: all but the
    offsets of a one-pass model, i.e. 2 of 5, else all) are sigmoid
    probabilities; the others (offsets) are blended as they are.

    ``volume (Z, Y, X) float32`` (already :func:`model_input`-normalised)
    ``-> (C, Z, Y, X) float32``.

    The model maps ``(B, 1, *window) -> (B, C, *window)`` outputs; ``window``
    must be a shape it accepts (divisible by ``model.divisor``, at most
    ``model.window``). It is moved to ``device`` and run in eval mode under
    ``torch.inference_mode`` with :func:`traice.nn.device.autocast` (bf16/fp16 on CUDA, bf16 on CPUs with
    native bf16, else float32);
    its train/eval mode and memory layout are restored afterwards. While it
    runs, the model's convolution weights are in the channels-last 3D layout,
    which oneDNN (CPU) and cuDNN convolve fastest.

    ``overlap`` is the windows' overlap, one share for every axis or one per
    axis (z, y, x); ``batch_size`` the windows per forward pass (None: the device's,
    :func:`traice.nn.device.window_batch`). An axis shorter than the window is padded with 0, the background level of
    the model input, split before/after as MONAI does; windows then tile the
    padded volume at :func:`window_starts`, and each window's sigmoid
    probability is weighted by :func:`gaussian_importance`. The result is the
    weighted mean over the windows covering each voxel, with the padding
    cropped off. This equals MONAI's ``sliding_window_inference(...,
    mode="gaussian", sigma_scale=0.125, padding_mode="constant")`` run on
    ``sigmoid(model(x))``.

    Memory on ``device``: the padded volume and C + 1 float32 accumulators
    ((C + 2) x 4 bytes per voxel) plus one batch of windows; callers tile
    large images (a (64, 1024, 1024) tile needs 0.8 GB for C = 1).
    """
    dev = pick_device(device)
    reuse_freed_memory()
    window = as_triple(window, "window")
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volume must be (Z, Y, X), got shape {volume.shape}")
    if batch_size is None:
        batch_size = window_batch(dev)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    pads = padding(volume.shape, window)
    padded_shape = tuple(s + a + b for s, (a, b) in zip(volume.shape, pads))
    inner = tuple(slice(a, a + s) for s, (a, _) in zip(volume.shape, pads))

    # The padded volume, on the device in one copy.
    if not volume.flags.writeable or not volume.flags.c_contiguous:
        volume = np.array(volume, dtype=np.float32, order="C")
    source = torch.from_numpy(volume)
    if dev.type == "cuda":
        source = source.pin_memory()
    if padded_shape == volume.shape:
        image = source.to(dev, non_blocking=True)
    else:
        image = torch.zeros(padded_shape, dtype=torch.float32, device=dev)
        image[inner].copy_(source, non_blocking=True)

    weight = gaussian_importance(window).to(dev)
    channels = output_channels(model)
    if probability_channels is None:  # a one-pass model: soma and foreground, then offsets
        probability_channels = PROBABILITY_CHANNELS if channels == len(CHANNELS) else channels
    total = torch.zeros((channels, *padded_shape), dtype=torch.float32, device=dev)  # sum of map * weight
    weight_sum = torch.zeros(padded_shape, dtype=torch.float32, device=dev)
    overlaps = axis_overlaps(overlap)
    starts = list(itertools.product(*(window_starts(s, w, o) for s, w, o in zip(padded_shape, window, overlaps))))
    boxes = [tuple(slice(o, o + w) for o, w in zip(start, window)) for start in starts]
    batch = torch.empty((min(batch_size, len(boxes)), 1, *window), dtype=torch.float32, device=dev)

    was_training = model.training
    # Channels-last 3D is the layout oneDNN and cuDNN convolve fastest (1.55x for S on
    # the development CPU); the numbers are the same up to float rounding.
    model.to(dev, memory_format=torch.channels_last_3d).eval()
    try:
        with torch.inference_mode(), autocast(dev):
            chunks = range(0, len(boxes), batch_size)
            for first in tqdm(chunks, desc="windows", unit="batch", disable=not progress):
                group = boxes[first : first + batch_size]
                for i, box in enumerate(group):
                    batch[i, 0].copy_(image[box])
                output = model(batch[: len(group)]).float()
                if output.shape[1:] != (channels, *window):
                    raise ValueError(f"model must return (B, {channels}, *window) outputs, got {tuple(output.shape)}")
                output[:, :probability_channels].sigmoid_()
                for i, box in enumerate(group):
                    total[(slice(None), *box)].addcmul_(output[i], weight)
                    weight_sum[box].add_(weight)
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)

    total.div_(weight_sum)
    out = total[(slice(None), *inner)].cpu().numpy()
    return np.ascontiguousarray(out)
