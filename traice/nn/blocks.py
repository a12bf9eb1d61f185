"""Small reusable blocks of the transformer U-Net.

Layout conventions, used by every block here:

- an image or feature *grid* is ``(B, C, Z, Y, X)`` (channels first, as Conv3d);
- a *token sequence* is ``(B, N, C)`` with ``N = z * y * x`` tokens in
  row-major (z, y, x) order, as :func:`grid_to_tokens` flattens a grid.

Convolutional blocks and the patch embedding/merging take and return grids;
attention and transformer blocks take and return token sequences.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Triple = tuple[int, int, int]


def as_triple(value: int | Sequence[int], name: str = "value") -> Triple:
    """``4 -> (4, 4, 4)``; a 3-sequence is returned as a tuple of ints."""
    if isinstance(value, int):
        return (value, value, value)
    out = tuple(int(v) for v in value)
    if len(out) != 3:
        raise ValueError(f"{name} must have 3 values (z, y, x), got {len(out)}")
    return out  # type: ignore[return-value]


def grid_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, z, y, x) -> (B, z*y*x, C)``."""
    return x.flatten(2).transpose(1, 2)


def tokens_to_grid(tokens: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """``(B, z*y*x, C) -> (B, C, z, y, x)`` for ``grid = (z, y, x)``."""
    b, n, c = tokens.shape
    z, y, x = grid
    if n != z * y * x:
        raise ValueError(f"{n} tokens do not fill a {tuple(grid)} grid")
    return tokens.transpose(1, 2).reshape(b, c, z, y, x)


class PatchEmbed3d(nn.Module):
    """Non-overlapping patches to embeddings: a Conv3d with kernel = stride = patch.

    ``(B, in_channels, Z, Y, X) -> (B, embed_dim, Z/pz, Y/py, X/px)``, a grid of
    patch tokens (use :func:`grid_to_tokens` for the sequence view). Each
    spatial size must be divisible by the patch size.
    """

    def __init__(self, in_channels: int = 1, embed_dim: int = 32, patch: Sequence[int] = (2, 8, 8)) -> None:
        super().__init__()
        self.patch = as_triple(patch, "patch")
        self.proj = nn.Conv3d(in_channels, embed_dim, kernel_size=self.patch, stride=self.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for size, p in zip(x.shape[2:], self.patch):
            if size % p:
                raise ValueError(f"input spatial shape {tuple(x.shape[2:])} is not divisible by patch {self.patch}")
        return self.proj(x)


class PositionEmbedding3d(nn.Module):
    """Learned 3D position embedding, factorised per axis.

    Three tables ``z: (Gz, C)``, ``y: (Gy, C)``, ``x: (Gx, C)``; the embedding of
    token ``(i, j, k)`` is ``z[i] + y[j] + x[k]``. ``forward`` takes a grid
    ``(B, C, z, y, x)`` with ``z <= Gz, y <= Gy, x <= Gx`` and returns it with the
    embedding added (same shape).

    A grid smaller than the one the tables were built for uses the first rows
    of each table (a crop, not an interpolation): every token keeps the
    embedding of its offset from the window origin, so one token still stands
    for the same physical distance, which is what matters at a fixed voxel
    size. A larger grid raises ValueError.
    """

    def __init__(self, embed_dim: int, grid: Sequence[int]) -> None:
        super().__init__()
        self.grid = as_triple(grid, "grid")
        gz, gy, gx = self.grid
        self.z = nn.Parameter(torch.zeros(gz, embed_dim))
        self.y = nn.Parameter(torch.zeros(gy, embed_dim))
        self.x = nn.Parameter(torch.zeros(gx, embed_dim))
        for table in (self.z, self.y, self.x):
            nn.init.trunc_normal_(table, std=0.02)

    def embedding(self, grid: Sequence[int]) -> torch.Tensor:
        """The embedding of a ``(z, y, x)`` token grid as ``(C, z, y, x)``."""
        z, y, x = grid
        if z > self.grid[0] or y > self.grid[1] or x > self.grid[2]:
            raise ValueError(f"token grid {tuple(grid)} is larger than the position embedding's {self.grid}")
        pos = self.z[:z, None, None, :] + self.y[None, :y, None, :] + self.x[None, None, :x, :]
        return pos.permute(3, 0, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.embedding(x.shape[2:])


class Attention(nn.Module):
    """Multi-head attention with separate q, k, v projections (self or cross).

    ``q: (B, Nq, C)``, ``k, v: (B, Nk, C) -> (B, Nq, C)``. Self-attention is
    ``attn(x, x, x)``. Separate projections keep the module usable for the
    stage-2 cross-attention and for LoRA adapters on q and v.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C) -> (B, heads, N, C/heads)``."""
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self._split_heads(self.q_proj(q))
        k = self._split_heads(self.k_proj(k))
        v = self._split_heads(self.v_proj(v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, Nq, C/heads)
        b, _, nq, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, -1))


class MLPBlock(nn.Module):
    """``Linear(C, hidden) -> GELU -> Linear(hidden, C)`` on ``(B, N, C)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block on a token sequence ``(B, N, C) -> (B, N, C)``.

    ``x = x + Attn(LN(x))``; ``x = x + MLP(LN(x))``, global multi-head
    self-attention, MLP hidden size ``mlp_ratio * C`` with GELU.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h)
        return x + self.mlp(self.norm2(x))


class PatchMerging3d(nn.Module):
    """2x2x2 patch merging (Swin-style): ``(B, C, z, y, x) -> (B, 2C, z/2, y/2, x/2)``.

    The 8 neighbours of each 2x2x2 cell are concatenated into 8C channels,
    layer-normalised and linearly projected to 2C. Each of z, y, x must be even.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8 * dim)
        self.reduction = nn.Linear(8 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, z, y, w = x.shape
        if z % 2 or y % 2 or w % 2:
            raise ValueError(f"patch merging needs an even grid, got {(z, y, w)}")
        x = x.reshape(b, c, z // 2, 2, y // 2, 2, w // 2, 2)
        x = x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, z // 2, y // 2, w // 2, 8 * c)
        x = self.reduction(self.norm(x))  # (B, z/2, y/2, x/2, 2C)
        return x.permute(0, 4, 1, 2, 3)


class InstanceNorm3d(nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` that keeps a channels-last input in that layout: ``(B, C, Z, Y, X)`` -> same.

    Each sample is normalised as a batch of one by batch norm (the same per-channel mean and variance over
    z, y, x), whose CPU kernels work in the channels-last layout; instance norm copies such an input to the
    contiguous layout and back (doing without saved about 5 % of a bf16 forward pass of the S network on 2 CPU
    threads: docs/arbors.md, "Speed and storage"). Same parameters and state dict, the same values to float rounding;
    other layouts go through ``nn.InstanceNorm3d`` itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.track_running_stats or x.dim() != 5 or not x.is_contiguous(memory_format=torch.channels_last_3d):
            return super().forward(x)
        return torch.cat([F.batch_norm(x[i:i + 1], None, None, self.weight, self.bias, True, 0.0, self.eps)
                          for i in range(x.shape[0])])


class ResidualConvBlock(nn.Module):
    """Two 3x3x3 convolutions with a residual connection (as MONAI's UnetResBlock).

    ``(B, in_channels, Z, Y, X) -> (B, out_channels, Z/sz, Y/sy, X/sx)``:
    ``conv(stride) -> IN -> LeakyReLU -> conv -> IN``, plus the input (through a
    1x1x1 convolution + IN when the channels or the stride change), then
    LeakyReLU. ``stride`` > 1 makes it a downsampling block.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int | Sequence[int] = 1) -> None:
        super().__init__()
        stride = as_triple(stride, "stride")
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = InstanceNorm3d(out_channels, affine=True)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = InstanceNorm3d(out_channels, affine=True)
        self.act = nn.LeakyReLU(0.01)
        self.skip: nn.Module
        if in_channels != out_channels or stride != (1, 1, 1):
            self.skip = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False),
                InstanceNorm3d(out_channels, affine=True),
            )
        else:
            self.skip = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.act(h + self.skip(x))


class UpBlock(nn.Module):
    """Upsample, concatenate a skip, fuse.

    ``x: (B, in_channels, z, y, x)``, ``skip: (B, skip_channels, z*fz, y*fy, x*fx)``
    ``-> (B, out_channels, z*fz, y*fy, x*fx)``: ConvTranspose3d with kernel =
    stride = ``factor`` to ``out_channels``, concatenation with ``skip``, then a
    :class:`ResidualConvBlock` from ``out_channels + skip_channels`` to
    ``out_channels``.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, factor: int | Sequence[int] = 2) -> None:
        super().__init__()
        factor = as_triple(factor, "factor")
        self.up = nn.ConvTranspose3d(in_channels, out_channels, kernel_size=factor, stride=factor)
        self.fuse = ResidualConvBlock(out_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if x.shape[2:] != skip.shape[2:]:
            raise ValueError(f"upsampled shape {tuple(x.shape[2:])} does not match skip {tuple(skip.shape[2:])}")
        return self.fuse(torch.cat([x, skip], dim=1))
