"""Neural networks (torch): the transformer U-Net, its blocks, the prompted network, losses, inference, checkpoints.

Layout: images and feature grids are ``(B, C, Z, Y, X)``; token sequences are
``(B, N, C)``.
"""

from traice.nn.blocks import (
    Attention,
    InstanceNorm3d,
    MLPBlock,
    PatchEmbed3d,
    PatchMerging3d,
    PositionEmbedding3d,
    ResidualConvBlock,
    TransformerBlock,
    UpBlock,
    grid_to_tokens,
    tokens_to_grid,
)
from traice.nn.unet import MODEL_SIZES, SkipHook, TransformerUNet3d, build_model, count_parameters, upsample_steps

__all__ = [
    "Attention",
    "InstanceNorm3d",
    "MLPBlock",
    "MODEL_SIZES",
    "PatchEmbed3d",
    "PatchMerging3d",
    "PositionEmbedding3d",
    "ResidualConvBlock",
    "SkipHook",
    "TransformerBlock",
    "TransformerUNet3d",
    "UpBlock",
    "build_model",
    "count_parameters",
    "grid_to_tokens",
    "tokens_to_grid",
    "upsample_steps",
]
