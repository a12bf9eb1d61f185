"""Stage 2 of trAIce3D: the transformer U-Net prompted with one soma's coordinate.

:class:`PromptedUNet3d` is the stage-1 :class:`~traice.nn.unet.TransformerUNet3d`
(same modules, same parameter names) with one :class:`~traice.nn.rcam.RCAM`
on each of its skip connections (bottleneck included). Shapes for the
default window and embedding ``C``, ``D = 8C`` (the deepest stage's width)::

    image (B, 1, Z, Y, X), points_vox (B, P, 3) voxel (z, y, x) in the window
      stem, encode (stage 1, unchanged)          skips s_i (B, C * 2**i, z_i, y_i, x_i)
      points -> normalise_points -> FourierPromptEncoder      point tokens (B, P, D)
      [point tokens, K learned context tokens]                 prompt (B, P+K, D)
      RCAM_3(s_3, prompt) -> s_3', prompt (B, P+K, 8C)         deepest first
      RCAM_2(s_2, prompt) -> s_2', prompt (B, P+K, 4C)
      RCAM_1(s_1, prompt) -> s_1', prompt (B, P+K, 2C)
      RCAM_0(s_0, prompt) -> s_0', prompt (B, P+K,  C)
      decode(s', stem) (stage 1, unchanged)      logits (B, 1, Z, Y, X)

Design choices:

- Deepest to shallowest: the order in which the decoder consumes the skips.
  The prompt first meets the coarsest, most semantic tokens (a whole cell
  spans a few of them) and carries what it found to the finer stages, where
  the arbor's detail is; its width shrinks with the stage's (8C -> C), as the
  decoder's does. The prompt encoder has the deepest width ``D = 8C``.
- The Fourier features of every image token's centre come from the same
  encoder as the points (same frequencies), so a point and the tokens at its
  location have matching position encodings (see :mod:`traice.nn.rcam`).
- ``K`` learned context tokens (default 1, no position) travel with the point
  tokens. With a single point, the image-to-prompt attention would have one
  key, a softmax of 1 everywhere, and could only add the same vector to every
  token; with a context token each image token splits its attention between
  "the prompted cell" and "the rest" according to its position and content,
  so the prompt can act locally.
- At initialisation every RCAM is exactly the identity on its skip, so
  :meth:`PromptedUNet3d.from_stage1` starts from the stage-1 network's output.

The ablation ``rcam=False`` is the same network with plain skips: exactly the
stage-1 architecture (no RCAM, no prompt encoder; the points are accepted and
ignored), trained from the same stage-1 weights with the same data and loss.
It therefore has fewer parameters: the RCAM's parameters *are* the thing being
ablated, and parameters that no input reaches add no capacity. For a control
with the same parameters and compute but no position information, run the
``rcam=True`` network with ``points_vox=None``: the RCAMs then see only the
context tokens (two-way attention with learned tokens, blind to the soma).

Checkpoints (:mod:`traice.nn.checkpoints`) store it with ``"kind": "prompted"``;
``config`` is ``PromptedUNet3d``'s keyword arguments (:func:`prompted_config`).
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
from torch import nn

from traice.nn.prompt import FourierPromptEncoder, normalise_points
from traice.nn.rcam import RCAM
from traice.nn.unet import TransformerUNet3d

PROMPT_OPTIONS = ("rcam", "pe_scale", "pe_seed", "context_tokens", "input_step")
"""Keyword arguments of :class:`PromptedUNet3d` on top of :class:`TransformerUNet3d`'s."""


class PromptedUNet3d(TransformerUNet3d):
    """Transformer U-Net with an RCAM on each skip connection, prompted by soma points.

    ``forward(x (B, in, Z, Y, X), points_vox (B, P, 3)) -> (B, out, Z, Y, X)`` logits.

    Args:
        rcam: False builds the ablation (plain skips, prompt ignored).
        pe_scale: standard deviation of the prompt encoder's Fourier frequencies.
        pe_seed: seed of those frequencies.
        context_tokens: learned prompt tokens without position, added to the points.
        input_step: the image voxels (z, y, x) one input voxel stands for: the
            window covers ``window * input_step`` image voxels, averaged in blocks
            of ``input_step`` (see :func:`traice.core.windows.block_mean`). The
            network does not use it; it travels with the weights so that training
            and inference sample the image alike.
        **unet: keyword arguments of :class:`TransformerUNet3d` (embed_dim, depths, ...).

    Stage-1 modules keep their names (``patch_embed``, ``stages``, ``up_tokens``,
    ...), so a stage-1 state dict loads into this network; the new ones are
    ``prompt_encoder``, ``context_tokens`` and ``rcams`` (``rcams[i]`` on stage ``i``).
    """

    def __init__(
        self,
        rcam: bool = True,
        pe_scale: float = 1.0,
        pe_seed: int = 0,
        context_tokens: int = 1,
        input_step: Sequence[int] = (1, 1, 1),
        **unet: Any,
    ) -> None:
        super().__init__(**unet)
        if context_tokens < 0:
            raise ValueError(f"context_tokens must be >= 0, got {context_tokens}")
        self.input_step = tuple(int(s) for s in input_step)
        if len(self.input_step) != 3 or min(self.input_step) < 1:
            raise ValueError(f"input_step must be three positive integers, got {tuple(input_step)}")
        self.use_rcam = bool(rcam)
        self.pe_scale = float(pe_scale)
        self.pe_seed = int(pe_seed)
        self.num_context_tokens = int(context_tokens)
        if not self.use_rcam:
            return
        dims = self.dims
        n = len(dims)
        width = dims[-1]
        mlp_ratio = float(unet.get("mlp_ratio", 4.0))
        self.prompt_encoder = FourierPromptEncoder(width, scale=self.pe_scale, seed=self.pe_seed)
        self.context_tokens = nn.Parameter(torch.zeros(1, self.num_context_tokens, width))
        nn.init.trunc_normal_(self.context_tokens, std=0.02)
        heads = self.stage_heads()
        # rcams[i] sits on stage i; the prompt arrives from stage i + 1 (from the encoder at the deepest).
        self.rcams = nn.ModuleList(
            RCAM(dims[i], dims[min(i + 1, n - 1)], heads[i], mlp_ratio, pe_dim=width) for i in range(n)
        )

    def stage_heads(self) -> list[int]:
        """Attention heads of each transformer stage (the RCAM of a stage uses as many)."""
        return [stage[0].attn.heads if len(stage) else max(1, dim // 32) for stage, dim in zip(self.stages, self.dims)]

    def config(self) -> dict:
        """Keyword arguments that rebuild this network (plain Python types, for :func:`traice.nn.checkpoints.save_model`)."""
        return prompted_config(
            stage1_config(self),
            rcam=self.use_rcam,
            pe_scale=self.pe_scale,
            pe_seed=self.pe_seed,
            context_tokens=self.num_context_tokens,
            input_step=self.input_step,
        )

    @classmethod
    def from_stage1(
        cls, stage1: TransformerUNet3d, rcam: bool = True, window: Sequence[int] | None = None, **options: Any
    ) -> "PromptedUNet3d":
        """A stage-2 network holding a copy of ``stage1``'s weights (same names).

        ``options`` are ``pe_scale``, ``pe_seed``, ``context_tokens``,
        ``input_step``. ``window`` (default: stage 1's) may differ from stage
        1's: each axis table of the position embedding is then linearly
        resampled to the new token count. The new network is on ``stage1``'s
        device and dtype; its RCAMs are freshly initialised (identity on the
        skips), so with stage 1's window its output at first equals
        ``stage1``'s for any prompt.
        """
        config = stage1_config(stage1)
        if window is not None:
            config["window"] = [int(w) for w in window]
        model = cls(**prompted_config(config, rcam=rcam, **options))
        first = next(stage1.parameters())
        model = model.to(device=first.device, dtype=first.dtype)
        state = dict(stage1.state_dict())
        for axis in ("z", "y", "x"):
            key = f"pos_embed.{axis}"
            rows = getattr(model.pos_embed, axis).shape[0]
            if state[key].shape[0] != rows:
                table = state[key].T[None]  # (1, C, G)
                state[key] = nn.functional.interpolate(table, size=rows, mode="linear", align_corners=True)[0].T
        missing, unexpected = model.load_state_dict(state, strict=False)
        new = ("prompt_encoder.", "context_tokens", "rcams.")
        if unexpected or any(not key.startswith(new) for key in missing):
            raise ValueError(
                f"stage-1 weights do not fit: unexpected {sorted(unexpected)}, "
                f"missing {sorted(k for k in missing if not k.startswith(new))}"
            )
        return model

    def prompt_tokens(
        self, points_vox: torch.Tensor | None, window_shape: Sequence[int], batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial prompt tokens and their position encodings, both ``(B, P+K, D)``.

        Point tokens (Fourier features + type embedding) come first, then the
        ``K`` context tokens, whose position encoding is zero. ``points_vox``
        None gives the context tokens alone.
        """
        context = self.context_tokens.expand(batch, -1, -1)
        if points_vox is None:
            return context, torch.zeros_like(context)
        coords = normalise_points(points_vox, window_shape).to(self.context_tokens.dtype)
        point_pe = self.prompt_encoder.encode(coords)  # (B, P, D)
        prompt = torch.cat([point_pe + self.prompt_encoder.type_embed, context], dim=1)
        prompt_pe = torch.cat([point_pe, torch.zeros_like(context)], dim=1)
        return prompt, prompt_pe

    def prompt_skips(
        self, skips: Sequence[torch.Tensor], points_vox: torch.Tensor | None, window_shape: Sequence[int]
    ) -> list[torch.Tensor]:
        """Pass the prompt through the RCAMs, deepest stage first; the skips with their additions.

        ``skips`` as :meth:`encode` returns them; ``window_shape`` is the input's
        ``(Z, Y, X)``, the frame of ``points_vox``.
        """
        prompt, prompt_pe = self.prompt_tokens(points_vox, window_shape, skips[0].shape[0])
        out = list(skips)
        for i in reversed(range(len(skips))):
            image_pe = self.prompt_encoder.grid_encoding(skips[i].shape[2:]).to(skips[i].dtype)  # (N_i, D)
            out[i], prompt = self.rcams[i](skips[i], prompt, image_pe, prompt_pe)
        return out

    def forward(self, x: torch.Tensor, points_vox: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """``(B, in, Z, Y, X)`` image and ``(B, P, 3)`` voxel ``(z, y, x)`` points ``-> (B, out, Z, Y, X)`` logits.

        Points are in the voxel frame of ``x`` (voxel ``i`` centred at ``i``;
        fractional and out-of-window values allowed). With ``rcam=False`` they
        are checked and ignored. With ``rcam=True``, None runs the RCAMs on the
        context tokens alone (the prompt-blind control).
        """
        self.check_input(x)
        if points_vox is not None and (
            points_vox.ndim != 3 or points_vox.shape[0] != x.shape[0] or points_vox.shape[2] != 3
        ):
            raise ValueError(f"expected points (B={x.shape[0]}, P, 3), got {tuple(points_vox.shape)}")
        stem = self.stem_features(x)
        skips = self.encode(x)
        if self.use_rcam:
            if points_vox is None and self.num_context_tokens == 0:
                raise ValueError("points_vox is required when the network has no context tokens")
            skips = self.prompt_skips(skips, points_vox, x.shape[2:])
        return self.decode(skips, stem)


def stage1_config(model: TransformerUNet3d) -> dict:
    """Keyword arguments that rebuild a :class:`TransformerUNet3d` of ``model``'s architecture.

    Read from the modules (the network does not keep its arguments); lists,
    not tuples, so the result can go into a checkpoint.
    """
    blocks = [stage[0] for stage in model.stages if len(stage)]
    mlp_ratio = blocks[0].mlp.fc1.out_features / blocks[0].mlp.fc1.in_features if blocks else 4.0
    heads = [stage[0].attn.heads if len(stage) else max(1, dim // 32) for stage, dim in zip(model.stages, model.dims)]
    return {
        "embed_dim": model.dims[0],
        "depths": [len(stage) for stage in model.stages],
        "heads": heads,
        "patch": list(model.patch),
        "in_channels": model.in_channels,
        "out_channels": model.out_channels,
        "window": list(model.window),
        "stem_channels": list(model.stem_channels),
        "mlp_ratio": float(mlp_ratio),
        **({} if model.full_resolution else {"full_resolution": False}),
    }


def prompted_config(base: dict, **options: Any) -> dict:
    """Keyword arguments of :class:`PromptedUNet3d`: a stage-1 config plus the prompt options.

    ``base`` is a :class:`TransformerUNet3d` config (a stage-1 checkpoint's
    ``"config"``, :func:`stage1_config`, or ``traice.training.recipes.model_config``);
    prompt options already in it are replaced; ``options`` (``PROMPT_OPTIONS``)
    not given take :class:`PromptedUNet3d`'s defaults. Tuples become lists.
    """
    unknown = set(options) - set(PROMPT_OPTIONS)
    if unknown:
        raise TypeError(f"unknown prompt options {sorted(unknown)}; choose from {PROMPT_OPTIONS}")
    defaults = inspect.signature(PromptedUNet3d.__init__).parameters
    chosen = {k: options.get(k, defaults[k].default) for k in PROMPT_OPTIONS}
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in base.items() if k not in PROMPT_OPTIONS}
    config.update(rcam=bool(chosen["rcam"]), pe_scale=float(chosen["pe_scale"]), pe_seed=int(chosen["pe_seed"]),
                  context_tokens=int(chosen["context_tokens"]), input_step=[int(s) for s in chosen["input_step"]])
    return config


def with_input_channels(model: PromptedUNet3d, in_channels: int) -> PromptedUNet3d:
    """A copy of ``model`` that takes ``in_channels`` input channels, the first ``model.in_channels`` of them
    as ``model`` takes them: the new channels' weights (patch embedding, first stem block) start at zero, so
    the copy's output equals ``model``'s for any values of the new channels until it is trained.

    The ownership network (``segment.method: prompted-growth``) is the stage-2 network with the one-pass
    foreground as its second channel."""
    if in_channels < model.in_channels:
        raise ValueError(f"cannot narrow a network of {model.in_channels} input channels to {in_channels}")
    wider = type(model)(**{**model.config(), "in_channels": in_channels})
    first = next(model.parameters())
    wider = wider.to(device=first.device, dtype=first.dtype)
    state = wider.state_dict()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name not in state:  # the first stem block's input became as wide as its output: no projection
                raise ValueError(f"a network with {in_channels} input channels has no weight {name}")
            target = state[name]
            if target.shape == value.shape:
                target.copy_(value)
            elif target.shape[0] == value.shape[0] and target.shape[2:] == value.shape[2:]:
                target.zero_()
                target[:, : value.shape[1]] = value  # a convolution over the input: new channels weigh 0
            else:
                raise ValueError(f"weight {name} is {tuple(value.shape)}, the wider network's {tuple(target.shape)}")
    wider.load_state_dict(state)
    return wider.train(model.training)
