"""Test-time mirroring (traice.nn.mirror): passes, mirrored back, offsets' signs, and its use in detection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from traice.core.maps import CHANNELS
from traice.core.windows import mirror_axes
from traice.nn.mirror import MirrorAverage
from traice.stages.detect import DetectParams
from traice.stages.detect.network import load


class Gradients(nn.Module):
    """A mirror-equivariant stand-in for a one-pass network: channels 0 and 1 a symmetric blur of the input,
    channels 2-4 its central differences along z, y and x (which change sign when the input is mirrored
    along their axis, as offsets do). ``(B, 1, Z, Y, X) -> (B, 5, Z, Y, X)``."""

    window = (8, 16, 16)
    divisor = (1, 1, 1)
    out_channels = len(CHANNELS)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 5, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0:2, 0] = 1.0 / 27
            for channel, axis in ((2, 0), (3, 1), (4, 2)):
                index = [channel, 0, 1, 1, 1]
                index[2 + axis] = 2
                self.conv.weight[tuple(index)] = 0.5
                index[2 + axis] = 0
                self.conv.weight[tuple(index)] = -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Shifted(nn.Module):
    """Not mirror-equivariant: every output channel is the input shifted by one voxel along x."""

    window = (8, 16, 16)
    divisor = (1, 1, 1)
    out_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, 1, dims=-1)


def test_mirror_axes_parses_and_refuses():
    assert mirror_axes("yx") == (1, 2)
    assert mirror_axes("xz") == (0, 2)
    assert mirror_axes("") == ()
    for bad in ("yy", "w", "z y"):
        with pytest.raises(ValueError, match="mirror axes"):
            mirror_axes(bad)


@pytest.mark.parametrize("axes", ["x", "yx", "zyx"])
def test_an_equivariant_network_is_unchanged_offsets_included(axes):
    torch.manual_seed(0)
    model = Gradients()
    x = torch.randn(2, 1, 8, 16, 16)
    wrapped = MirrorAverage(model, axes)
    assert len(wrapped.flips) == 2 ** len(axes)
    with torch.no_grad():
        expected, out = model(x), wrapped(x)
    # Without the sign change, the mirrored passes' offsets would cancel the unmirrored one's.
    assert expected[:, 2:].abs().mean() > 0.1
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert (wrapped.window, wrapped.out_channels) == (model.window, model.out_channels)


def test_each_pass_is_mirrored_back_before_the_mean():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 1, 2, 4, 4)
    with torch.no_grad():
        out = MirrorAverage(Shifted(), "x")(x)
    # Unmirrored: x shifted right by one; mirrored, shifted, mirrored back: x shifted left by one.
    expected = (torch.roll(x, 1, dims=-1) + torch.roll(x, -1, dims=-1)) / 2
    torch.testing.assert_close(out, expected)


def test_detect_params_mirror_wraps_the_shipped_network():
    plain, mirrored = load(DetectParams()), load(DetectParams(mirror="yx"))
    assert not isinstance(plain, MirrorAverage)
    assert isinstance(mirrored, MirrorAverage) and len(mirrored.flips) == 4
    assert mirrored.window == plain.window and mirrored.out_channels == len(CHANNELS)
