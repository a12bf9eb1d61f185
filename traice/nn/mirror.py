"""Test-time mirroring: a network's outputs averaged over mirrored copies of its input.

``MirrorAverage(model, "yx")`` runs ``model`` on the window as it is and
mirrored along y, along x and along both, mirrors each output back and
returns the mean logits (nnU-Net mirrors its inputs the same way at
inference). An offset channel of a one-pass network (:mod:`traice.core.maps`)
points the other way in a mirrored window, so it changes sign before it is
averaged. A network trained with flips (``traice.training.data.Augment``)
should answer a mirrored window with the mirror of its answer; where it does
not quite, the mean is a smaller ensemble at ``2 ** len(axes)`` times the cost.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from traice.core.maps import CHANNELS, PROBABILITY_CHANNELS
from traice.core.windows import mirror_axes
from traice.nn.inferer import output_channels


class MirrorAverage(nn.Module):
    """``(B, 1, Z, Y, X) -> (B, C, Z, Y, X)``: mean of ``model``'s logits over its input mirrored along every
    subset of ``axes`` (``2 ** len(axes)`` passes, the unmirrored one included), each mirrored back.

    For a one-pass network (``C == len(CHANNELS)``) channel ``PROBABILITY_CHANNELS + a`` is the offset along
    axis ``a``; it is negated for the passes that mirror that axis. ``window``, ``divisor`` and
    ``out_channels`` are the wrapped network's.
    """

    def __init__(self, model: nn.Module, axes: str) -> None:
        super().__init__()
        self.model = model
        self.axes = axes
        dims = mirror_axes(axes)
        self.flips = [tuple(2 + d for d in subset) for n in range(len(dims) + 1)
                      for subset in itertools.combinations(dims, n)]
        self.window = getattr(model, "window", None)
        self.divisor = getattr(model, "divisor", None)
        self.out_channels = output_channels(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for flip in self.flips:
            out = self.model(x.flip(flip) if flip else x)
            if flip:
                out = out.flip(flip)
                if out.shape[1] == len(CHANNELS):
                    for dim in flip:  # dim 2 + a of (B, C, Z, Y, X) is axis a
                        out[:, PROBABILITY_CHANNELS + dim - 2].neg_()
            total = out.float() if total is None else total.add_(out.float())
        return total.div_(len(self.flips))
