"""Inference helpers of the transformer U-Net: input normalisation, sliding windows, checkpoints.

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

Checkpoints are plain ``torch.save`` dictionaries that ``torch.load(...,
weights_only=True)`` can read: ``{"version", "config", "state_dict", "meta"}``.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from traice.detect import normalise
from traice.io.tables import atomic_path
from traice.models.blocks import as_triple
from traice.models.unet import TransformerUNet3d

CHECKPOINT_VERSION = 1
"""Version of the checkpoint dictionary written by :func:`save_model`."""

ASINH_SCALE = 3.0
"""Noise sigmas over which :func:`model_input` stays linear before it turns logarithmic."""


# ----------------------------------------------------------------------------- input


def model_input(raw: np.ndarray, stats: dict) -> np.ndarray:
    """The network's input from raw counts: ``arcsinh(normalise(raw, stats) / 3)``.

    ``(Z, Y, X)`` any numeric dtype ``-> (Z, Y, X) float32``.

    :func:`traice.detect.normalise` maps counts to background-noise units (0 =
    background median, 1 = one noise sigma); ``arcsinh(x / 3)`` is then about
    ``x / 3`` within three sigmas of the background (noise stays linear, near
    +-0.3) and logarithmic above, so somas several-fold brighter than faint
    ones or than thick processes land within a few units of each other. It is
    odd-symmetric, so background stays centred on 0.

    ``stats`` (keys ``median``, ``sigma``) are computed once per image, not
    per tile or window: the same voxel gets the same input value in every
    tile, so tiles have no seams. Training and inference both use this
    function.
    """
    x = normalise(np.asarray(raw, dtype=np.float32), stats)
    return np.arcsinh(x / np.float32(ASINH_SCALE)).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- device


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


# ----------------------------------------------------------------------------- windows


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


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis of ``size`` voxels.

    Windows of ``window`` voxels every ``max(1, int(window * (1 - overlap)))``
    voxels from 0, as few as cover the axis; the last one is moved back to end
    exactly at ``size``. A ``size`` no larger than ``window`` gives ``[0]``
    (a smaller axis is padded up to the window). Same positions as MONAI's
    ``sliding_window_inference``.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    if size <= window:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    count = -(-(size - window) // step) + 1  # smallest k with (k - 1) * step + window >= size
    return [min(k * step, size - window) for k in range(count)]


def padding(shape: Sequence[int], window: Sequence[int]) -> list[tuple[int, int]]:
    """``(before, after)`` per axis that pads ``shape`` up to at least ``window``.

    The missing voxels are split with the odd one after, as MONAI pads.
    """
    out = []
    for size, w in zip(shape, window):
        missing = max(w - size, 0)
        out.append((missing // 2, missing - missing // 2))
    return out


def sliding_window_probabilities(
    model: nn.Module,
    volume: np.ndarray,
    window: Sequence[int] = (16, 256, 256),
    overlap: float = 0.25,
    batch_size: int = 4,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> np.ndarray:
    """Foreground probabilities of a whole volume from overlapping windows.

    ``volume (Z, Y, X) float32`` (already :func:`model_input`-normalised)
    ``-> (Z, Y, X) float32`` in [0, 1].

    The model maps ``(B, 1, *window) -> (B, 1, *window)`` logits; ``window``
    must be a shape it accepts (divisible by ``model.divisor``, at most
    ``model.window``). It is moved to ``device`` and run in eval mode under
    ``torch.inference_mode`` (with bf16/fp16 autocast on CUDA; float32 on CPU);
    its train/eval mode and memory layout are restored afterwards. While it
    runs, the model's convolution weights are in the channels-last 3D layout,
    which oneDNN (CPU) and cuDNN convolve fastest.

    An axis shorter than the window is padded with 0, the background level of
    the model input, split before/after as MONAI does; windows then tile the
    padded volume at :func:`window_starts`, and each window's sigmoid
    probability is weighted by :func:`gaussian_importance`. The result is the
    weighted mean over the windows covering each voxel, with the padding
    cropped off. This equals MONAI's ``sliding_window_inference(...,
    mode="gaussian", sigma_scale=0.125, padding_mode="constant")`` run on
    ``sigmoid(model(x))``.

    Memory on ``device``: the padded volume and two float32 accumulators
    (3 x 4 bytes per voxel) plus one batch of windows; callers tile large
    images (a (64, 1024, 1024) tile needs 0.8 GB).
    """
    dev = pick_device(device)
    window = as_triple(window, "window")
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volume must be (Z, Y, X), got shape {volume.shape}")
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
    total = torch.zeros(padded_shape, dtype=torch.float32, device=dev)  # sum of probability * weight
    weight_sum = torch.zeros(padded_shape, dtype=torch.float32, device=dev)
    starts = list(itertools.product(*(window_starts(s, w, overlap) for s, w in zip(padded_shape, window))))
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
                logits = model(batch[: len(group)])
                if logits.shape[1:] != (1, *window):
                    raise ValueError(f"model must return (B, 1, *window) logits, got {tuple(logits.shape)}")
                probability = torch.sigmoid(logits.float())
                for i, box in enumerate(group):
                    total[box].addcmul_(probability[i, 0], weight)
                    weight_sum[box].add_(weight)
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was_training)

    total.div_(weight_sum)
    out = total[inner].cpu().numpy()
    return np.ascontiguousarray(out)


# ----------------------------------------------------------------------------- checkpoints


def _check_plain(value: Any, where: str = "value") -> None:
    """Raise TypeError unless ``value`` is made of plain Python types (``weights_only`` loadable)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; checkpoints hold only plain Python types")


def save_model(model: nn.Module, config: dict, path: str | Path, meta: dict | None = None,
               network: type[nn.Module] = TransformerUNet3d, kind: str | None = None) -> None:
    """Write ``{"version", "config", "state_dict", "meta"}`` to ``path`` with ``torch.save``.

    ``config`` is the keyword arguments that rebuild the network,
    ``TransformerUNet3d(**config)``; ``meta`` is free information (training
    data, epochs, scores). Both must be plain Python types (numbers, strings,
    lists, tuples, dicts with string keys) so that the file loads with
    ``weights_only=True``. The config is checked against the model's weights
    before writing (a network built from it on the meta device must have the
    same parameter names and shapes). ``network`` is the class ``config``
    rebuilds; ``kind``, if given, is stored to tell checkpoint kinds apart.
    """
    _check_plain(config, "config")
    _check_plain(meta, "meta")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with torch.device("meta"):
        probe = network(**config).state_dict()
    if {k: tuple(v.shape) for k, v in probe.items()} != {k: tuple(v.shape) for k, v in state.items()}:
        raise ValueError(f"config does not describe this model: {network.__name__}(**config) has other weights")
    checkpoint = {"version": CHECKPOINT_VERSION, "config": dict(config), "state_dict": state, "meta": meta or {}}
    if kind is not None:
        checkpoint["kind"] = kind
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dictionary written by :func:`save_model` (tensors on CPU)."""
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} is not a traice model checkpoint (version {CHECKPOINT_VERSION})")
    return checkpoint


def load_model(path: str | Path) -> TransformerUNet3d:
    """Rebuild ``TransformerUNet3d(**config)`` from a checkpoint and load its weights; CPU, eval mode."""
    checkpoint = load_checkpoint(path)
    model = TransformerUNet3d(**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
