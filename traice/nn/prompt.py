"""Stage-2 prompt encoding: soma coordinates as random Fourier features.

A prompt is a point in the network's input window, given in voxel
coordinates ``(z, y, x)`` (fractional values allowed). It is first mapped to
``[-1, 1]`` per axis by :func:`normalise_points`, then encoded by
:class:`FourierPromptEncoder`::

    points_vox (B, P, 3)  --normalise_points-->  p (B, P, 3) in [-1, 1]
      -> p @ G                 G: (3, D/2) fixed Gaussian, std = scale   (B, P, D/2)
      -> [sin(2 pi pG), cos(2 pi pG)]                                    (B, P, D)
      -> + type embedding (learned, one D-vector)                        (B, P, D)

The same Fourier features, without the type embedding, encode the position of
every token of a feature grid (:meth:`FourierPromptEncoder.grid_encoding`),
so a prompt and the image tokens at its location have similar encodings:
``sum(sin a sin b + cos a cos b) = sum(cos(a - b))`` is large when the two
positions are close. The width of that similarity is set by ``scale``: the
features approximate the Gaussian kernel ``exp(-2 pi^2 scale^2 |d|^2)`` of the
normalised distance ``d``, so ``scale = 1`` gives a half-maximum at ``|d| ~ 0.19``,
about a tenth of the window along each axis.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def normalise_points(points_vox: torch.Tensor, window_shape: Sequence[int]) -> torch.Tensor:
    """Voxel coordinates in a window to ``[-1, 1]`` per axis.

    ``points_vox (B, P, 3)`` in ``(z, y, x)`` voxel indices (voxel ``i`` has
    its centre at ``i``), ``window_shape = (Z, Y, X)`` ``-> (B, P, 3)`` float::

        p_norm = 2 * (p + 0.5) / size - 1

    so ``-1`` and ``+1`` are the window's outer faces (the outer edges of the
    first and last voxels; "align_corners=False"), and the centre of voxel
    ``i`` is at ``-1 + (2i + 1) / size``. A grid of ``n`` tokens over the same
    window has its token ``j`` centred at ``2 * (j + 0.5) / n - 1``, the same
    convention (see :func:`grid_centres`). Points outside the window map
    outside ``[-1, 1]`` and are not clipped.
    """
    if points_vox.ndim != 3 or points_vox.shape[-1] != 3:
        raise ValueError(f"expected points (B, P, 3), got {tuple(points_vox.shape)}")
    if len(window_shape) != 3:
        raise ValueError(f"window_shape must be (Z, Y, X), got {tuple(window_shape)}")
    dtype = points_vox.dtype if points_vox.is_floating_point() else torch.float32
    size = torch.tensor([float(s) for s in window_shape], dtype=dtype, device=points_vox.device)
    return 2.0 * (points_vox.to(dtype) + 0.5) / size - 1.0


def grid_centres(grid: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised centres of the tokens of a ``(z, y, x)`` grid: ``(z*y*x, 3)``.

    Row-major ``(z, y, x)`` order, as :func:`traice.nn.blocks.grid_to_tokens`
    flattens a grid; token ``j`` of an axis with ``n`` tokens is at
    ``2 * (j + 0.5) / n - 1``.
    """
    axes = [(torch.arange(n, dtype=torch.float32, device=device) + 0.5) * (2.0 / n) - 1.0 for n in grid]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([zz, yy, xx], dim=-1).reshape(-1, 3)


class FourierPromptEncoder(nn.Module):
    """Random Fourier features of normalised ``(z, y, x)`` points, plus a type embedding.

    ``forward(points (B, P, 3) in [-1, 1]) -> (B, P, embed_dim)``.

    Args:
        embed_dim: output channels (even): ``embed_dim / 2`` frequencies, a sin
            and a cos of each.
        scale: standard deviation of the Gaussian frequency matrix (cycles per
            unit of normalised coordinate).
        seed: seed of the frequency matrix, so that two encoders built with the
            same arguments are identical.

    The frequency matrix ``gaussian (3, embed_dim / 2)`` is a buffer, not a
    parameter: it is never trained, and is saved in the state dict so that a
    checkpoint keeps its features even if torch's random streams change.
    ``type_embed (embed_dim,)`` is learned and marks a token as a point prompt.
    """

    def __init__(self, embed_dim: int, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if embed_dim < 2 or embed_dim % 2:
            raise ValueError(f"embed_dim must be even and positive, got {embed_dim}")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.embed_dim = embed_dim
        self.scale = float(scale)
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        gaussian = torch.randn(3, embed_dim // 2, generator=generator, device="cpu") * self.scale
        self.register_buffer("gaussian", gaussian)
        self.type_embed = nn.Parameter(torch.zeros(embed_dim))
        nn.init.trunc_normal_(self.type_embed, std=0.02)

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Fourier features only: ``(..., 3) -> (..., embed_dim)`` = ``[sin(2 pi cG), cos(2 pi cG)]``."""
        if coords.shape[-1] != 3:
            raise ValueError(f"expected (z, y, x) coordinates in the last axis, got {tuple(coords.shape)}")
        phase = (2.0 * math.pi) * (coords.to(self.gaussian.dtype) @ self.gaussian)
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)

    def grid_encoding(self, grid: Sequence[int]) -> torch.Tensor:
        """Fourier features of the token centres of a ``(z, y, x)`` grid: ``(z*y*x, embed_dim)``."""
        return self.encode(grid_centres(grid, device=self.gaussian.device))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """``(B, P, 3)`` normalised points ``-> (B, P, embed_dim)`` prompt tokens."""
        if points.ndim != 3:
            raise ValueError(f"expected points (B, P, 3), got {tuple(points.shape)}")
        return self.encode(points) + self.type_embed
