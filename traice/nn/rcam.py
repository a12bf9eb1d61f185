"""RCAM: the two-way prompt/image attention block of a stage-2 skip connection.

One block sits on one skip connection of the U-Net. It takes the skip grid
``(B, C, z, y, x)`` (as image tokens ``t: (B, N, C)``, ``N = z*y*x``) and the
prompt tokens ``p: (B, P, Cp)``, and returns the skip with the prompt's
contribution added, and the updated prompt tokens (in ``C`` channels)::

    p = prompt_proj(p)                                   (B, P, C)   Cp -> C (identity if equal)
    (1) p = norm1(p + SelfAttn(q=p+ppe, k=p+ppe, v=p))   prompt self-attention
    (2) p = norm2(p + CrossAttn(q=p+ppe, k=t+ipe, v=t))  prompt attends to the image
    (3) p = norm3(p + MLP(p))
    (4) a = CrossAttn(q=t+ipe, k=p+ppe, v=p)             image attends to the prompt   (B, N, C)
        t' = norm4(t + a)                                 add & norm (norm4 without bias)
        skip' = skip + (t' - norm4(t))                    the change made by (4), back on the grid

Positions: ``ipe`` is the Fourier encoding of each image token's normalised
centre and ``ppe`` that of each prompt point (zeros for prompt tokens that are
not points), both from the same
:class:`~traice.nn.prompt.FourierPromptEncoder` (``pe_dim`` channels) and
projected to ``C`` by one shared linear map ``pe_proj``, so that a point and
the image tokens at its location stay comparable. As in segment-anything's
two-way transformer, they are added to the image keys of (2), the image
queries of (4), and to the prompt side of every attention, and never to the
values: attention uses position to decide *where* to look, the values carry
content. This is what lets a prompt find the tokens of "its" cell.

Residual path: the block's image output is made an explicit residual,
``skip + delta`` with ``delta = norm4(t + a) - norm4(t)``. The output projection
of the attention in (4) starts at zero, so ``a = 0``, ``delta = 0`` and the
block is exactly the identity on the skip at initialisation: a stage-2
network built from stage-1 weights computes the stage-1 output until training
moves that projection. (At initialisation the gradient reaches only that zero
projection; after the first step it reaches every parameter.)

Note on (4) with one prompt token: softmax over a single key is 1 everywhere,
so the image would receive the same vector at every token. The stage-2 network
therefore adds learned context tokens to the prompt (see
:class:`~traice.nn.prompted.PromptedUNet3d`); with two or more keys the
weight each image token gives the point depends on ``t + ipe`` vs ``p + ppe``,
i.e. on where the token is relative to the point.
"""

from __future__ import annotations

import torch
from torch import nn

from traice.nn.blocks import Attention, MLPBlock, grid_to_tokens, tokens_to_grid


class RCAM(nn.Module):
    """Two-way attention between prompt tokens and the tokens of one skip connection.

    ``forward(skip (B, C, z, y, x), prompt (B, P, Cp), image_pe, prompt_pe)
    -> (skip' (B, C, z, y, x), prompt' (B, P, C))``; see the module docstring.

    Args:
        dim: skip channels ``C``.
        prompt_dim: channels ``Cp`` of the incoming prompt tokens (projected to ``C``).
        heads: attention heads (``C`` must divide by it).
        mlp_ratio: hidden size of the prompt MLP over ``C``.
        pe_dim: channels of the Fourier position encodings (projected to ``C``);
            default ``prompt_dim``.
    """

    def __init__(self, dim: int, prompt_dim: int, heads: int, mlp_ratio: float = 4, pe_dim: int | None = None) -> None:
        super().__init__()
        pe_dim = prompt_dim if pe_dim is None else pe_dim
        self.dim = dim
        self.prompt_proj: nn.Module = nn.Linear(prompt_dim, dim) if prompt_dim != dim else nn.Identity()
        self.pe_proj: nn.Module = nn.Linear(pe_dim, dim) if pe_dim != dim else nn.Identity()
        self.self_attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_prompt_to_image = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))
        self.norm3 = nn.LayerNorm(dim)
        self.cross_image_to_prompt = Attention(dim, heads)
        self.norm4 = nn.LayerNorm(dim, bias=False)  # a bias would cancel in norm4(t + a) - norm4(t)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation, then a zero output projection of (4).

        The linear layers keep ``nn.Linear``'s default (uniform, ``1/sqrt(fan_in)``
        bound), as segment-anything's two-way transformer, rather than the
        encoder's ViT std-0.02: the query/key products that match a token's
        position to the prompt's then start ~25x larger, and in a small probe
        (learning a bump around the point from random tokens) the block
        learned to localise clearly faster. The zero projection makes the
        block the identity on the skip (see the module docstring).
        """
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.LayerNorm)):
                module.reset_parameters()
        nn.init.zeros_(self.cross_image_to_prompt.out_proj.weight)
        nn.init.zeros_(self.cross_image_to_prompt.out_proj.bias)

    def forward(
        self,
        skip: torch.Tensor,
        prompt: torch.Tensor,
        image_pe: torch.Tensor | None = None,
        prompt_pe: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the prompt's contribution to a skip; update the prompt.

        Args:
            skip: ``(B, C, z, y, x)`` skip grid.
            prompt: ``(B, P, Cp)`` prompt tokens.
            image_pe: ``(N, pe_dim)`` or ``(B, N, pe_dim)`` position encoding of
                the ``N = z*y*x`` image tokens in row-major order; None = none.
            prompt_pe: ``(B, P, pe_dim)`` position encoding of the prompt
                tokens; None = none.

        Returns:
            ``skip + delta`` ``(B, C, z, y, x)`` and the prompt ``(B, P, C)``.
        """
        if skip.ndim != 5 or skip.shape[1] != self.dim:
            raise ValueError(f"expected skip (B, {self.dim}, z, y, x), got {tuple(skip.shape)}")
        if prompt.ndim != 3 or prompt.shape[0] != skip.shape[0]:
            raise ValueError(f"expected prompt (B, P, Cp) with B = {skip.shape[0]}, got {tuple(prompt.shape)}")
        grid = skip.shape[2:]
        t = grid_to_tokens(skip)  # (B, N, C)
        p = self.prompt_proj(prompt)  # (B, P, C)
        t_pos = t  # image tokens with position: keys of (2), queries of (4)
        if image_pe is not None:
            if image_pe.shape[-2] != t.shape[1]:
                raise ValueError(f"image_pe has {image_pe.shape[-2]} tokens, the skip {t.shape[1]}")
            t_pos = t + self.pe_proj(image_pe)
        ppe = self.pe_proj(prompt_pe) if prompt_pe is not None else torch.zeros_like(p)

        # (1) prompt self-attention
        q = p + ppe
        p = self.norm1(p + self.self_attn(q, q, p))
        # (2) prompt attends to the image tokens
        p = self.norm2(p + self.cross_prompt_to_image(p + ppe, t_pos, t))
        # (3) MLP on the prompt
        p = self.norm3(p + self.mlp(p))
        # (4) image tokens attend to the prompt; the change it makes is the skip's residual
        a = self.cross_image_to_prompt(t_pos, p + ppe, p)  # (B, N, C)
        delta = self.norm4(t + a) - self.norm4(t)
        return skip + tokens_to_grid(delta, grid), p
