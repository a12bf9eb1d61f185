"""The trAIce3D transformer U-Net: a 3D ViT encoder and a CNN decoder.

Shapes for the default window ``(16, 256, 256)``, patch ``(2, 8, 8)`` and
embedding ``C``::

    image (B, 1, 16, 256, 256)
      -> patch embed + position embedding      (B,  C, 8, 32, 32)
      -> stage 0 (1 block)                     (B,  C, 8, 32, 32)   skip 0
      -> merge, stage 1 (1 block)              (B, 2C, 4, 16, 16)   skip 1
      -> merge, stage 2 (1 block)              (B, 4C, 2,  8,  8)   skip 2
      -> merge, stage 3 (3 blocks)             (B, 8C, 1,  4,  4)   skip 3 (bottleneck)
    decoder: up x2 + skip 2 -> up x2 + skip 1 -> up x2 + skip 0  (B, C, 8, 32, 32)
      -> up (2,2,2) + stem 2                   (B, s2, 16,  64,  64)
      -> up (1,2,2) + stem 1                   (B, s1, 16, 128, 128)
      -> up (1,2,2) + stem 0                   (B, s0, 16, 256, 256)
      -> 1x1x1 conv                            (B, out_channels, 16, 256, 256) logits

The "stem" is a small CNN on the input image (as UNETR's first encoder block)
that gives the decoder full- and intermediate-resolution detail which the
8x32x32 token grid cannot carry. The patch is undone in three steps, z first:
at 1.25 x 0.4 x 0.4 um voxels this passes through nearly isotropic grids.

With ``full_resolution=False`` there is no convolution at full resolution:
the stem starts with the strided block, the decoder stops one step short, and
the head gives every voxel of that last step its own logits (``out_channels``
for each of the step's ``2 x 2`` sub-voxels, rearranged onto the full grid, as
a pixel shuffle does)::

    stem 1 (strided, from the image)            (B, s1, 16, 128, 128)
    ... decoder as above up to stem 1           (B, s1, 16, 128, 128)
      -> 1x1x1 conv                             (B, out_channels * 4, 16, 128, 128)
      -> sub-voxels onto the grid               (B, out_channels, 16, 256, 256) logits

The full-resolution stage is two thirds of a CPU forward pass of size S
(few channels over the most voxels); without it a detect job ran 2.2x
faster (docs/arbors.md). The strided 3x3x3 convolution still sees every
input voxel.

Any input whose spatial shape divides by ``patch * 2**(stages - 1)`` (that is
(16, 64, 64) by default) and is no larger than ``window`` is accepted.

Skip connections are the four stage outputs. ``forward(x, skip_hook)`` lets a
caller map each one before decoding (stage 2 inserts its prompt cross-attention
there); subclasses can instead compose :meth:`stem_features`, :meth:`encode`
and :meth:`decode`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from traice.nn.blocks import (
    PatchEmbed3d,
    PatchMerging3d,
    PositionEmbedding3d,
    ResidualConvBlock,
    TransformerBlock,
    Triple,
    UpBlock,
    as_triple,
    grid_to_tokens,
    tokens_to_grid,
)

SkipHook = Callable[[int, torch.Tensor], torch.Tensor]
"""``hook(stage_index, skip) -> skip`` with the same shape ``(B, C_i, z_i, y_i, x_i)``."""

MODEL_SIZES: dict[str, dict[str, Any]] = {
    "S": {"embed_dim": 32, "heads": (1, 2, 4, 8)},
    "L": {"embed_dim": 128, "heads": (4, 8, 16, 32)},
}
"""Named configurations (head dimension 32 in every stage)."""


def default_heads(embed_dim: int, stages: int) -> tuple[int, ...]:
    """Attention heads per stage for a head dimension of 32 (at least one head)."""
    return tuple(max(1, embed_dim * 2**i // 32) for i in range(stages))


def upsample_steps(patch: Sequence[int]) -> list[Triple]:
    """Split the patch into three x2 upsampling steps, coarse to fine.

    An axis with patch size ``2**k`` (k <= 3) doubles in the first ``k`` steps:
    ``(2, 8, 8) -> [(2, 2, 2), (1, 2, 2), (1, 2, 2)]``.
    """
    steps = [[1, 1, 1] for _ in range(3)]
    for axis, p in enumerate(as_triple(patch, "patch")):
        if p not in (1, 2, 4, 8):
            raise ValueError(f"patch sizes must be 1, 2, 4 or 8, got {tuple(patch)}")
        for step in range(p.bit_length() - 1):
            steps[step][axis] = 2
    return [tuple(s) for s in steps]  # type: ignore[misc]


class TransformerUNet3d(nn.Module):
    """3D ViT encoder + CNN decoder with one logit map per output channel.

    ``(B, in_channels, Z, Y, X) -> (B, out_channels, Z, Y, X)`` logits.

    Args:
        embed_dim: token channels of stage 0; stage ``i`` has ``embed_dim * 2**i``.
        depths: transformer blocks per stage (the number of stages is ``len(depths)``).
        heads: attention heads per stage; default: head dimension 32.
        patch: patch size (z, y, x); each entry 1, 2, 4 or 8.
        in_channels, out_channels: image channels, logit channels.
        window: largest input (z, y, x); sizes the position embedding.
        stem_channels: CNN channels at full, 1/step-3 and 1/(step-2*step-3)
            resolution; default ``(C/4, C/4, C/2)``.
        mlp_ratio: transformer MLP hidden size over its width.
        full_resolution: False: no full-resolution stage (module docstring);
            ``stem_channels[0]`` is then unused.
    """

    def __init__(
        self,
        embed_dim: int = 32,
        depths: Sequence[int] = (1, 1, 1, 3),
        heads: Sequence[int] | None = None,
        patch: Sequence[int] = (2, 8, 8),
        in_channels: int = 1,
        out_channels: int = 1,
        window: Sequence[int] = (16, 256, 256),
        stem_channels: Sequence[int] | None = None,
        mlp_ratio: float = 4.0,
        full_resolution: bool = True,
    ) -> None:
        super().__init__()
        n = len(depths)
        if n < 1:
            raise ValueError("depths must name at least one stage")
        heads = tuple(heads) if heads is not None else default_heads(embed_dim, n)
        if len(heads) != n:
            raise ValueError(f"heads {heads} must have one entry per stage ({n})")
        if stem_channels is None:
            stem_channels = (max(1, embed_dim // 4), max(1, embed_dim // 4), max(1, embed_dim // 2))
        if len(stem_channels) != 3:
            raise ValueError(f"stem_channels must have 3 entries, got {tuple(stem_channels)}")
        self.patch = as_triple(patch, "patch")
        self.window = as_triple(window, "window")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stem_channels = tuple(int(c) for c in stem_channels)
        self.full_resolution = bool(full_resolution)
        self.divisor: Triple = tuple(p * 2 ** (n - 1) for p in self.patch)  # type: ignore[assignment]
        for w, d in zip(self.window, self.divisor):
            if w % d:
                raise ValueError(f"window {self.window} is not divisible by {self.divisor} (patch x 2**(stages-1))")
        dims = [embed_dim * 2**i for i in range(n)]
        self.dims = dims
        steps = upsample_steps(self.patch)  # coarse to fine
        s0, s1, s2 = stem_channels

        # Encoder: patch embedding, position embedding, stages separated by merging.
        self.patch_embed = PatchEmbed3d(in_channels, embed_dim, self.patch)
        self.pos_embed = PositionEmbedding3d(embed_dim, [w // p for w, p in zip(self.window, self.patch)])
        self.merges = nn.ModuleList(PatchMerging3d(dims[i]) for i in range(n - 1))
        self.stages = nn.ModuleList(
            nn.Sequential(*(TransformerBlock(dims[i], heads[i], mlp_ratio) for _ in range(depths[i]))) for i in range(n)
        )
        self.stage_norms = nn.ModuleList(nn.LayerNorm(d) for d in dims)

        # Stem: CNN features of the image, fine to coarse, matching the last upsampling steps.
        if self.full_resolution:
            stem = [ResidualConvBlock(in_channels, s0), ResidualConvBlock(s0, s1, stride=steps[2])]
        else:
            stem = [ResidualConvBlock(in_channels, s1, stride=steps[2])]
        self.stem = nn.ModuleList([*stem, ResidualConvBlock(s1, s2, stride=steps[1])])

        # Decoder: token stages back to stage 0, then the patch undone against the stem.
        self.up_tokens = nn.ModuleList(UpBlock(dims[i], dims[i - 1], dims[i - 1], 2) for i in range(n - 1, 0, -1))
        up_stem = [UpBlock(embed_dim, s2, s2, steps[0]), UpBlock(s2, s1, s1, steps[1])]
        if self.full_resolution:
            up_stem.append(UpBlock(s1, s0, s0, steps[2]))
        self.up_stem = nn.ModuleList(up_stem)
        self.subvoxels: Triple = (1, 1, 1) if self.full_resolution else steps[2]
        last = s0 if self.full_resolution else s1
        self.head = nn.Conv3d(last, out_channels * self.subvoxels[0] * self.subvoxels[1] * self.subvoxels[2], 1)
        self.apply(_init_linear)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is ``(B, in_channels, Z, Y, X)`` with an accepted shape."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, Z, Y, X), got {tuple(x.shape)}")
        spatial = tuple(x.shape[2:])
        if any(s % d for s, d in zip(spatial, self.divisor)):
            raise ValueError(f"input spatial shape {spatial} must be divisible by {self.divisor} in (z, y, x)")
        if any(s > w for s, w in zip(spatial, self.window)):
            raise ValueError(f"input spatial shape {spatial} is larger than the model window {self.window}")

    def stem_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """CNN features of the image, fine to coarse.

        ``(B, in, Z, Y, X) -> [(B, s0, Z, Y, X), (B, s1, ...), (B, s2, ...)]``,
        at full resolution, then downsampled by the last and the middle
        upsampling step ((1, 2, 2) twice for the default patch); without the
        full-resolution stage the first of the three is not computed.
        """
        features = []
        for block in self.stem:
            x = block(x)
            features.append(x)
        return features

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Transformer stage outputs: ``(B, in, Z, Y, X) -> [(B, C * 2**i, z_i, y_i, x_i)]``.

        ``z_0, y_0, x_0 = Z/pz, Y/py, X/px`` and each later stage halves every axis.
        """
        grid = self.pos_embed(self.patch_embed(x))  # (B, C, z0, y0, x0)
        skips = []
        for i, (stage, norm) in enumerate(zip(self.stages, self.stage_norms)):
            if i > 0:
                grid = self.merges[i - 1](grid)
            size = grid.shape[2:]
            tokens = stage(grid_to_tokens(grid))  # (B, N_i, C_i)
            grid = tokens_to_grid(tokens, size)
            skips.append(tokens_to_grid(norm(tokens), size))
        return skips

    def decode(self, skips: Sequence[torch.Tensor], stem: Sequence[torch.Tensor]) -> torch.Tensor:
        """Stage outputs (as :meth:`encode`) and stem features -> logits ``(B, out, Z, Y, X)``."""
        x = skips[-1]
        for up, skip in zip(self.up_tokens, reversed(skips[:-1])):
            x = up(x, skip)
        for up, feature in zip(self.up_stem, reversed(stem)):
            x = up(x, feature)
        return subvoxels_to_grid(self.head(x), self.subvoxels)

    def forward(self, x: torch.Tensor, skip_hook: SkipHook | None = None) -> torch.Tensor:
        """``(B, in, Z, Y, X) -> (B, out, Z, Y, X)`` logits.

        ``skip_hook(i, skip)``, if given, maps stage ``i``'s output (bottleneck
        included) before the decoder uses it, and must keep its shape.
        """
        self.check_input(x)
        stem = self.stem_features(x)
        skips = self.encode(x)
        if skip_hook is not None:
            hooked = []
            for i, skip in enumerate(skips):
                out = skip_hook(i, skip)
                if out.shape != skip.shape:
                    raise ValueError(f"skip_hook changed stage {i} from {tuple(skip.shape)} to {tuple(out.shape)}")
                hooked.append(out)
            skips = hooked
        return self.decode(skips, stem)


def subvoxels_to_grid(x: torch.Tensor, factor: Triple) -> torch.Tensor:
    """Logits of each voxel's sub-voxels onto the finer grid (a 3D pixel shuffle).

    ``(B, C * fz * fy * fx, z, y, x) -> (B, C, z * fz, y * fy, x * fx)``; channel
    ``c * fz * fy * fx + (i * fy + j) * fx + k`` is sub-voxel ``(i, j, k)`` of channel ``c``.
    """
    fz, fy, fx = factor
    if (fz, fy, fx) == (1, 1, 1):
        return x
    b, channels, z, y, w = x.shape
    c = channels // (fz * fy * fx)
    x = x.reshape(b, c, fz, fy, fx, z, y, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c, z * fz, y * fy, w * fx)


def _init_linear(module: nn.Module) -> None:
    """ViT initialisation of linear layers: truncated normal (std 0.02), zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_model(size: str = "S", **overrides: Any) -> TransformerUNet3d:
    """A :class:`TransformerUNet3d` of a named size ("S" or "L"); keyword arguments override it."""
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; choose from {sorted(MODEL_SIZES)}")
    return TransformerUNet3d(**{**MODEL_SIZES[size], **overrides})


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
